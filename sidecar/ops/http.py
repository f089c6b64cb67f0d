"""HTTP endpoints for Kubernetes probes and Prometheus, on SIDECAR_HTTP_ADDRESS, and the probe logic.

* ``/healthz`` (liveness): the process is alive, the poll thread is turning (its last loop iteration
  is recent) and records move when they could (``sidecar.ops.progress``: not for
  ``SIDECAR_STALL_TIMEOUT_MS`` with records waiting in Kafka, app credit and nothing fetched, delivered
  or acked). A revoke may legitimately hold the thread for up to the revoke grace, so "recent" allows
  that plus a margin. A failing liveness probe restarts the container, which is the right cure for a
  stuck poll thread or consumer and the wrong one for anything slower, hence the margins.
* ``/readyz`` (readiness): the member has joined the group, the poll thread is healthy, the sidecar is
  not draining and, with ``SIDECAR_READINESS=app`` (the default), at least one app stream is
  connected. A rolling update waits for readiness before it restarts the next pod, so "ready" means
  "records are flowing to an app", not only "the sidecar is up".
* ``/metrics``: Prometheus exposition of the default registry (see ``sidecar.ops.metrics``).

grpc.health.v1 follows ``member_ready`` (everything but the app stream: the app is the gRPC client
and may wait for SERVING before it connects); the daemon keeps the two in step.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.ops.progress import ProgressWatch, Readings

Probe = Callable[[], tuple[bool, str]]


class ListenError(OSError):
    """The sidecar cannot listen where it was told to (gRPC or HTTP): the message names the address."""


class HttpServer:
    def __init__(self, host: str, port: int, *, healthy: Probe, ready: Probe) -> None:
        self._host, self._port = host, port
        self._healthy, self._ready = healthy, ready
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except OSError as exc:
            problem = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ListenError(f"cannot serve HTTP on {self._host}:{self._port}: {problem or exc}") from None

    async def stop(self) -> None:
        await self._runner.cleanup()

    @staticmethod
    def _answer(result: tuple[bool, str]) -> web.Response:
        ok, text = result
        return web.Response(status=200 if ok else 503, text=text + "\n")

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._answer(self._healthy())

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._answer(self._ready())

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def poll_liveness(
    last_poll: Callable[[], float],
    alive: Callable[[], bool],
    stale_after_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> Probe:
    """A /healthz probe: the poll thread runs and its last loop turn is under ``stale_after_s`` old."""

    def probe() -> tuple[bool, str]:
        if not alive():
            return False, "poll thread stopped"
        age = clock() - last_poll()
        if age > stale_after_s:
            return False, f"poll thread stuck for {age:.1f}s"
        return True, f"ok (last poll {age:.2f}s ago)"

    return probe


def progress_liveness(turning: Probe, watch: ProgressWatch | None, read: Callable[[], Readings]) -> Probe:
    """``turning`` and, when a watch is set, records moving whenever they could (``sidecar.ops.progress``)."""

    def probe() -> tuple[bool, str]:
        ok, why = turning()
        if not ok or watch is None:
            return ok, why
        moving, because = watch.look(read())
        return (True, why) if moving else (False, because)

    return probe


def member_ready(
    joined: Callable[[], bool],
    draining: Callable[[], bool],
    healthy: Probe,
    waiting: Callable[[], str | None] = lambda: None,
) -> Probe:
    """Ready as a group member: joined, poll thread healthy, not draining (grpc.health.v1 follows this).

    `waiting` says why a running member is out of the group (it waits to join again), or None.
    """

    def probe() -> tuple[bool, str]:
        if draining():
            return False, "draining"
        why_out = waiting()
        if why_out is not None:
            return False, why_out
        if not joined():
            return False, "not joined yet"
        ok, why = healthy()
        if not ok:
            return False, why
        return True, "joined"

    return probe


def readiness(member: Probe, app_streams: Callable[[], int], require_app: bool) -> Probe:
    """The /readyz probe: ``member`` ready and, if ``require_app``, at least one app stream connected."""

    def probe() -> tuple[bool, str]:
        ok, why = member()
        if not ok:
            return False, why
        streams = app_streams()
        if require_app and streams == 0:
            return False, "joined; waiting for an app stream"
        return True, f"ready: joined, {streams} app stream{'' if streams == 1 else 's'}"

    return probe
