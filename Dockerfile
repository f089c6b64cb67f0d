# syntax=docker/dockerfile:1
# kafka-sidecar: the Kafka consumer-group member that runs beside the app in its pod.
#
#   docker build -t kafka-sidecar:0.1.0 --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#
# Two stages. `build` installs the package with .ci/install-app, the same script CI runs, into a venv at
# /opt/kafka-sidecar. The final stage copies only that venv onto the same slim base: no compiler, no pip,
# no source tree. Linted by hadolint in tests/deploy/test_dockerfile.py.

# The interpreter CI tests on; both stages must use the same one, since the venv links to it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# A C compiler for the package's compiled hot path (sidecar/core/*.c, sidecar/api/_batch.c and
# sidecar/kafka/_native.c), built against the base's own Python headers; the compiler stays in this
# stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# Only what the wheel is built from (.dockerignore keeps the rest of the checkout out of the context).
COPY pyproject.toml setup.py README.md ./
COPY sidecar ./sidecar
COPY .ci/install-app ./.ci/install-app
RUN bash .ci/install-app /opt/kafka-sidecar

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="kafka-sidecar" \
      org.opencontainers.image.description="A Kafka consumer-group member beside your app: streams records over gRPC, commits only what the app acked." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# The base image's installer and build tools (pip, setuptools, wheel) are never needed at run time. A
# fixed numeric uid/gid lets Kubernetes check runAsNonRoot, and lets the app container run as the same
# user to reach the socket. A base whose pip belongs to the OS (Debian's python3-pip, in /usr/lib) is left
# as it was by `pip uninstall`, silently, so the build checks that pip is really gone.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && if python -c "import pip" 2>/dev/null; then \
        echo "pip is still installed: PYTHON_IMAGE's pip belongs to the OS, so pip uninstall left it" >&2; \
        exit 1; fi \
    && groupadd --system --gid 10001 sidecar \
    && useradd --system --uid 10001 --gid sidecar --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sidecar \
    && install --directory --owner=sidecar --group=sidecar --mode=0755 /run/kafka-sidecar

COPY --from=build /opt/kafka-sidecar /opt/kafka-sidecar

# Defaults for a container: the app reaches the gRPC unix socket in the shared volume below; probes and
# Prometheus reach HTTP on the container's address. Every SIDECAR_*/KAFKA_* variable can override.
ENV PATH=/opt/kafka-sidecar/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIDECAR_GRPC_ADDRESS=unix:///run/kafka-sidecar/sidecar.sock \
    SIDECAR_HTTP_ADDRESS=0.0.0.0:8080

# The socket directory: share it with the app container (an emptyDir in Kubernetes, a named volume in
# Docker).
VOLUME ["/run/kafka-sidecar"]
EXPOSE 8080
USER 10001:10001

# Asks /healthz on the port of SIDECAR_HTTP_ADDRESS via loopback; any error or non-2xx answer exits 1.
# (Kubernetes ignores HEALTHCHECK and uses the chart's probes; with SIDECAR_HTTP_ADDRESS=off, run the
# container with --no-healthcheck.)
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['SIDECAR_HTTP_ADDRESS'].rpartition(':')[2]; urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4)"]

# Exec form: kafka-sidecar is PID 1 and receives SIGTERM itself. It handles SIGTERM and SIGINT (stop
# delivering, drain acks up to SIDECAR_DRAIN_TIMEOUT_MS, commit, exit 0) and starts no child processes,
# so there is no shell in between and no init to reap zombies.
STOPSIGNAL SIGTERM
ENTRYPOINT ["kafka-sidecar"]
CMD ["run"]
