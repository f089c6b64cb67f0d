"""Rendering the Helm chart with Helm's own engine, and judging the output with real schemas.

Why these tools: ``helm-python-sdk`` binds Helm's Go SDK, so templates, sprig functions, schema
validation and ``fail`` behave exactly as in ``helm install``, with no helm binary and no cluster.
``kubernetes-validate`` holds the OpenAPI schemas of each Kubernetes release, and its strict mode also
refuses unknown fields, which the API server would silently drop (a dropped ``restartPolicy`` would
turn the native sidecar into an init container that never ends). The ServiceMonitor is a Prometheus
Operator CRD, outside Kubernetes' schemas; it is checked against the operator's generated models.

Scenarios are the chart's documented options (its README); each test renders one and inspects the
objects, so what is asserted is what a cluster would receive.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import yaml  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "kafka-sidecar"

#: Schemas checked against: 1.29 is the first release with native sidecars on by default (the chart's
#: default mode); the newer one catches fields that later releases renamed or dropped.
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")

RELEASE = "orders"
NAMESPACE = "shop"
#: The release's full name: workload, Service, PDB and pods are named after it.
FULLNAME = "orders-kafka-sidecar"

#: What a user must set (README "Install"); everything else keeps the chart's defaults.
REQUIRED_VALUES: dict[str, Any] = {
    "app": {"image": {"repository": "registry.example/orders-worker", "tag": "1.4.2"}},
    "kafka": {"bootstrapServers": "kafka-0.kafka:9092,kafka-1.kafka:9092", "groupId": "orders"},
    "sidecar": {"topics": "orders,^orders-retry-.*"},
}

_SASL: dict[str, Any] = {
    "kafka": {"securityProtocol": "SASL_SSL", "saslMechanisms": "SCRAM-SHA-512"},
    "auth": {"sasl": {"existingSecret": "kafka-credentials"}},
}
_TLS: dict[str, Any] = {
    "kafka": {"securityProtocol": "SSL"},
    "auth": {
        "tls": {
            "existingSecret": "kafka-tls",
            "certKey": "tls.crt",
            "keyKey": "tls.key",
            "keyPasswordKey": "key-password",
        }
    },
}

#: The documented options, each on top of REQUIRED_VALUES.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "deployment": {"workload": "Deployment"},
    "plain-container": {"sidecarContainer": {"native": False}},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
    "sasl-existing-secret": _SASL,
    "tls-existing-secret": _TLS,
    "everything": {
        "workload": "Deployment",
        "staticMembership": True,
        "replicas": 6,
        "kafka": {
            "securityProtocol": "SASL_SSL",
            "saslMechanisms": "SCRAM-SHA-256",
            "sessionTimeoutMs": 45000,
            "heartbeatIntervalMs": 5000,
            "maxPollIntervalMs": 600000,
            "fetchMaxBytes": 67108864,
            "checkCrcs": True,
        },
        "sidecar": {
            "drainTimeoutMs": 50000,
            "revokeGraceMs": 15000,
            "bufferMaxBytes": "128MiB",
            "logLevel": "debug",
        },
        "auth": {"sasl": _SASL["auth"]["sasl"], "tls": {"existingSecret": "kafka-ca"}},
        "sidecarContainer": {
            "native": False,
            "preStopSleepSeconds": 8,
            "extraEnv": [
                {"name": "KAFKA_CLIENT_RACK", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
            ],
        },
        "terminationGracePeriodSeconds": 90,
        "serviceMonitor": {"enabled": True},
        "socket": {"medium": "Memory"},
        "app": {
            "command": ["orders-worker"],
            "args": ["--max-in-flight", "1000"],
            "env": [{"name": "LOG_LEVEL", "value": "debug"}],
            "ports": [{"name": "admin", "containerPort": 9000}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "admin"}},
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}],
        },
        "volumes": [{"name": "scratch", "emptyDir": {}}],
        "podAnnotations": {"example.com/team": "orders"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}},
            }
        ],
    },
}

Manifest = dict[str, Any]


def merge(base: Mapping[str, Any], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge as Helm coalesces values: maps merge key by key, anything else is replaced."""
    out = copy.deepcopy(dict(base))
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def scenario_values(name: str, *extra: Mapping[str, Any]) -> dict[str, Any]:
    return merge(REQUIRED_VALUES, SCENARIOS[name], *extra)


def render_documents(chart: helm.Chart, values: Mapping[str, Any]) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template`` produces it (NOTES.txt included)."""
    return chart.render(dict(values), name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(chart: helm.Chart, values: Mapping[str, Any]) -> list[Manifest]:
    """The Kubernetes objects the chart renders for `values`."""
    manifests: list[Manifest] = []
    for path, text in sorted(render_documents(chart, values).items()):
        if path.endswith(".yaml"):
            manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[m['kind'] for m in manifests]}"
    return found[0]


def workload(manifests: list[Manifest]) -> Manifest:
    found = [m for m in manifests if m["kind"] in ("StatefulSet", "Deployment")]
    assert len(found) == 1, f"expected one workload, got {[m['kind'] for m in manifests]}"
    return found[0]


def pod_spec(manifests: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = workload(manifests)["spec"]["template"]["spec"]
    return spec


def containers(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container of a pod spec (init and regular) by name."""
    everything = [*spec.get("initContainers", []), *spec["containers"]]
    by_name = {c["name"]: c for c in everything}
    assert len(by_name) == len(everything), "container names must be unique"
    return by_name


def environment(container: Mapping[str, Any], *, pod_name: str, secrets: Mapping[str, str]) -> dict[str, str]:
    """A container's environment as the kubelet would resolve it: values as they are, the downward API's
    pod name, and Secret keys (``"<secret>/<key>"``) from `secrets`. Anything else fails the test."""
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        assert name not in env, f"{name} is set twice in {container['name']}"
        if "value" in entry:
            assert isinstance(entry["value"], str), f"{name}: env values must be strings"
            env[name] = entry["value"]
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source and source["fieldRef"]["fieldPath"] == "metadata.name":
            env[name] = pod_name
        elif "fieldRef" in source and source["fieldRef"]["fieldPath"] == "spec.nodeName":
            env[name] = "node-a"
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[name] = secrets[f"{ref['name']}/{ref['key']}"]
        else:
            raise AssertionError(f"{name}: unexpected valueFrom {source}")
    return env


def validate(manifest: Manifest, kubernetes_version: str) -> None:
    """Raise unless `manifest` is valid for `kubernetes_version` (unknown fields included)."""
    if manifest["apiVersion"] == "monitoring.coreos.com/v1":
        _validate_service_monitor(manifest)
        return
    kubernetes_validate.validate(manifest, kubernetes_version, strict=True)


def _validate_service_monitor(manifest: Manifest) -> None:
    """Types, enums and required fields from the operator's models; unknown fields, which the models
    would silently ignore, are found by comparing the input with what the model kept."""
    from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

    assert manifest["kind"] == "ServiceMonitor", manifest["kind"]
    model = ServiceMonitor.model_validate(manifest)
    kept = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert kept == manifest, f"fields the ServiceMonitor schema does not know: {manifest} != {kept}"
