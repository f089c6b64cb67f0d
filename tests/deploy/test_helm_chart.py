"""The Helm chart (helm/kafka-sidecar), rendered by Helm's engine for each documented option.

Every rendered object is validated against the Kubernetes schemas, and the properties the sidecar
depends on are asserted on the objects themselves: its environment is fed to the sidecar's own
configuration parser and to librdkafka, so the chart cannot hand the sidecar a variable it would
refuse at start-up. See chart_support.py for the tools and the scenarios.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from chart_support import (
    CHART_DIR,
    FULLNAME,
    KUBERNETES_VERSIONS,
    REPO_ROOT,
    REQUIRED_VALUES,
    SCENARIOS,
    Manifest,
    containers,
    environment,
    merge,
    one,
    pod_spec,
    render,
    render_documents,
    scenario_values,
    validate,
    workload,
)
from yamllint import linter  # type: ignore[import-untyped]
from yamllint.config import YamlLintConfig  # type: ignore[import-untyped]

from sidecar.config import Config
from sidecar.consumer.member import check_kafka_config

SIDECAR = "kafka-sidecar"
KEY_PASSWORD = "key-secret-1"
#: What the kubelet would read from the scenarios' Secrets.
SECRETS = {
    "kafka-credentials/username": "orders-svc",
    "kafka-credentials/password": "sasl-secret-1",
    "kafka-tls/key-password": KEY_PASSWORD,
}
#: A valid value for every sidecar.* key of the schema: the chart must offer each SIDECAR_* setting.
EVERY_SIDECAR_SETTING: dict[str, Any] = {
    "groupType": "consumer",
    "shareConsumers": 4,
    "topics": "orders",
    "bufferMaxRecords": 20000,
    "bufferMaxBytes": "32MiB",
    "maxBatchRecords": 200,
    "maxBatchBytes": 524288,
    "maxRequestBytes": "8MiB",
    "maxStreams": 64,
    "grpcSocketMode": "0600",
    # files the configuration can read here (it checks they are readable): any will do
    "tlsCertFile": str(Path(__file__).resolve()),
    "tlsKeyFile": str(Path(__file__).resolve()),
    "tlsClientCaFile": str(Path(__file__).resolve()),
    "grpcTokenFile": str(Path(__file__).resolve()),
    "commitIntervalMs": 2000,
    "revokeGraceMs": 5000,
    "drainTimeoutMs": 15000,
    "stallTimeoutMs": 300000,
    "ordering": "key",
    "ackTimeoutMs": 30000,
    "retryBackoffMs": 500,
    "retryBackoffMaxMs": 30000,
    "maxDeliveryAttempts": 3,
    "dlqTopic": "orders-dlq",
    "onExhausted": "skip",
    "gapMetadataMaxBytes": 2000,
    "readiness": "joined",
    "logLevel": "WARNING",
    "logFormat": "text",
}

scenarios = pytest.mark.parametrize("scenario", list(SCENARIOS))


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a client certificate with a password-protected key, named as in the TLS Secrets, so
    librdkafka really loads what the rendered KAFKA_SSL_* variables point at."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make the test certificates")
    out = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=out, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    run("req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ca")
    run(
        "req",
        *ec,
        "-keyout",
        "tls.key",
        "-passout",
        f"pass:{KEY_PASSWORD}",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=o",
    )
    run(
        "x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-out", "tls.crt", "-days", "2"
    )
    return out


def pod_name(manifests: list[Manifest]) -> str:
    if workload(manifests)["kind"] == "StatefulSet":
        return f"{FULLNAME}-0"
    return f"{FULLNAME}-6d9f8b7c5-x2x9k"


def sidecar_config(manifests: list[Manifest]) -> Config:
    """The sidecar's configuration, parsed by the sidecar from the environment the chart gives it."""
    sidecar = containers(pod_spec(manifests))[SIDECAR]
    return Config.from_env(environment(sidecar, pod_name=pod_name(manifests), secrets=SECRETS))


def known_sidecar_variables() -> set[str]:
    """Every SIDECAR_* variable the sidecar knows, from its own configuration table."""
    config = Config.from_env(
        {"KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_GROUP_ID": "g", "SIDECAR_TOPICS": "t"}
    )
    return {name for name, _, _ in config.describe() if name.startswith("SIDECAR_")}


def prestop_seconds(container: Mapping[str, Any]) -> int:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if command is None:
        return 0
    assert command[0] == "sleep", command
    return int(command[1])


# -- schemas and linters ---------------------------------------------------------------------------------


@scenarios
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid_for_kubernetes(
    chart: helm.Chart, scenario: str, version: str
) -> None:
    manifests = render(chart, scenario_values(scenario))
    kinds = sorted(m["kind"] for m in manifests)
    expected = ["PodDisruptionBudget", "Service", "ServiceAccount", workload(manifests)["kind"]]
    if scenario in ("service-monitor", "everything"):
        expected.append("ServiceMonitor")
    assert kinds == sorted(expected)
    for manifest in manifests:
        validate(manifest, version)
        assert manifest["metadata"]["labels"]["app.kubernetes.io/instance"] == "orders"


def test_validation_refuses_unknown_fields(chart: helm.Chart) -> None:
    """The validators are strict: a misspelt field fails, as the API server would drop it silently."""
    manifests = render(chart, scenario_values("service-monitor"))
    statefulset = one(manifests, "StatefulSet")
    statefulset["spec"]["template"]["spec"]["initContainers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="restartPolicyy"):
        validate(statefulset, KUBERNETES_VERSIONS[0])
    monitor = one(manifests, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["pathh"] = "/metrics"
    with pytest.raises(AssertionError, match="does not know"):
        validate(monitor, KUBERNETES_VERSIONS[0])


def test_helm_lint_strict_finds_nothing() -> None:
    report = helm.lint(CHART_DIR, REQUIRED_VALUES, strict=True, kube_version="v1.29.0")
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_native_sidecar_refuses_kubernetes_before_1_29(capfd: pytest.CaptureFixture[str]) -> None:
    """On 1.28 the API server drops an init container's restartPolicy, so the sidecar would block the
    app forever; the chart fails instead. Helm's lint runs templates at a chosen Kubernetes version but
    only logs `fail` (to stderr), so that is where the message is looked for."""
    message = "sidecarContainer.native needs Kubernetes >= 1.29"
    helm.lint(CHART_DIR, REQUIRED_VALUES, kube_version="v1.28.0")
    assert message in capfd.readouterr().err
    helm.lint(CHART_DIR, REQUIRED_VALUES, kube_version="v1.29.0")
    helm.lint(
        CHART_DIR, merge(REQUIRED_VALUES, {"sidecarContainer": {"native": False}}), kube_version="v1.28.0"
    )
    assert message not in capfd.readouterr().err


def test_plain_yaml_files_are_lint_clean() -> None:
    """values.yaml and Chart.yaml with the repository's .yamllint.yaml (which leaves templates out)."""
    config = YamlLintConfig(file=str(REPO_ROOT / ".yamllint.yaml"))
    files = sorted(CHART_DIR.glob("*.yaml"))
    assert [f.name for f in files] == ["Chart.yaml", "values.yaml"]
    for path in files:
        problems = [str(p) for p in linter.run(path.read_text(), config, str(path.relative_to(REPO_ROOT)))]
        assert problems == [], path.name
    template = CHART_DIR / "templates" / "workload.yaml"
    assert config.is_file_ignored(str(template.relative_to(REPO_ROOT)))


@scenarios
def test_rendered_manifests_are_lint_clean(chart: helm.Chart, scenario: str) -> None:
    """Templates are Go templates, not YAML, so their output is linted: whitespace control mistakes
    (stray blank lines, trailing spaces) show up here. toYaml writes sequences unindented while the
    templates indent theirs, so either style is accepted."""
    config = YamlLintConfig(
        f"extends: {REPO_ROOT / '.yamllint.yaml'}\nrules:\n  indentation:\n    indent-sequences: whatever\n"
    )
    for path, text in render_documents(chart, scenario_values(scenario)).items():
        if path.endswith(".yaml") and text.strip():
            assert [str(p) for p in linter.run(text, config)] == [], path


# -- the sidecar's environment ---------------------------------------------------------------------------


@scenarios
def test_sidecar_accepts_its_rendered_environment(chart: helm.Chart, scenario: str, tls_dir: Path) -> None:
    """The sidecar's own parser and librdkafka accept every variable the chart renders, with the TLS
    files the variables name really loaded."""
    values = scenario_values(scenario, {"auth": {"tls": {"mountPath": str(tls_dir)}}})
    manifests = render(chart, values)
    values = chart.merge_values(values)  # with the chart's defaults, as the templates saw them
    config = sidecar_config(manifests)
    check_kafka_config(config.kafka)
    assert config.grpc_address == "unix:///run/kafka-sidecar/sidecar.sock"
    assert config.http_address == ("0.0.0.0", 8080)
    assert config.topics == tuple(values["sidecar"]["topics"].split(","))
    assert config.kafka["bootstrap.servers"] == values["kafka"]["bootstrapServers"]
    assert config.kafka["group.id"] == "orders"
    assert config.drain_timeout_ms == values["sidecar"]["drainTimeoutMs"]
    assert config.log_format == "json"


def test_values_become_variables_with_their_values(chart: helm.Chart) -> None:
    """kafka.* -> KAFKA_*, sidecar.* -> SIDECAR_*; large numbers stay whole numbers, not 6.7e+07."""
    config = sidecar_config(render(chart, scenario_values("everything")))
    assert config.kafka["session.timeout.ms"] == "45000"
    assert config.kafka["heartbeat.interval.ms"] == "5000"
    assert config.kafka["max.poll.interval.ms"] == "600000"
    assert config.kafka["fetch.max.bytes"] == "67108864"
    assert config.kafka["check.crcs"] == "true"
    assert config.kafka["client.rack"] == "node-a"
    assert config.kafka["sasl.username"] == "orders-svc"
    assert config.kafka["sasl.password"] == "sasl-secret-1"
    assert config.sources["sasl.password"] == "KAFKA_SASL_PASSWORD"
    assert config.buffer_max_bytes == 128 * 1024 * 1024
    assert config.revoke_grace_ms == 15000
    assert config.log_level == "DEBUG"


def test_every_sidecar_setting_renders_to_a_variable_the_sidecar_knows(chart: helm.Chart) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert set(EVERY_SIDECAR_SETTING) == set(schema["properties"]["sidecar"]["properties"])
    manifests = render(chart, merge(REQUIRED_VALUES, {"sidecar": EVERY_SIDECAR_SETTING}))
    sidecar = containers(pod_spec(manifests))[SIDECAR]
    rendered = {e["name"] for e in sidecar["env"] if e["name"].startswith("SIDECAR_")}
    assert rendered == known_sidecar_variables()
    config = sidecar_config(manifests)
    from_defaults = [name for name, _, source in config.describe() if source == "default"]
    assert not [name for name in from_defaults if name.startswith("SIDECAR_")]


@pytest.mark.parametrize(
    ("scenario", "static"),
    [("defaults", True), ("deployment", False), ("everything", True)],
)
def test_group_instance_id_comes_from_the_pod_name(chart: helm.Chart, scenario: str, static: bool) -> None:
    """StatefulSet pods keep their names, so by default they are static members; Deployment pods get new
    names on every replacement, so there it is opt-in (the "everything" scenario opts in)."""
    manifests = render(chart, scenario_values(scenario))
    sidecar = containers(pod_spec(manifests))[SIDECAR]
    entries = [e for e in sidecar["env"] if e["name"] == "KAFKA_GROUP_INSTANCE_ID"]
    config = sidecar_config(manifests)
    if static:
        assert entries == [
            {"name": "KAFKA_GROUP_INSTANCE_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ]
        assert config.kafka["group.instance.id"] == pod_name(manifests)
    else:
        assert entries == []
        assert not config.static_member


# -- the pod ----------------------------------------------------------------------------------------------


@scenarios
def test_sidecar_probes_ask_its_http_endpoints(chart: helm.Chart, scenario: str) -> None:
    manifests = render(chart, scenario_values(scenario))
    sidecar = containers(pod_spec(manifests))[SIDECAR]
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert sidecar_config(manifests).http_address == ("0.0.0.0", ports["http"])


@scenarios
def test_grace_period_covers_the_prestop_and_the_drain(chart: helm.Chart, scenario: str) -> None:
    manifests = render(chart, scenario_values(scenario))
    spec = pod_spec(manifests)
    sidecar = containers(spec)[SIDECAR]
    drain_s = sidecar_config(manifests).drain_timeout_ms / 1000
    assert spec["terminationGracePeriodSeconds"] > prestop_seconds(sidecar) + drain_s


@pytest.mark.parametrize(
    ("scenario", "native", "prestop"),
    [("defaults", True, 0), ("plain-container", False, 5), ("everything", False, 8)],
)
def test_native_sidecar_or_plain_container(
    chart: helm.Chart, scenario: str, native: bool, prestop: int
) -> None:
    """Native: an init container with restartPolicy Always (starts before the app, stops after it).
    Plain: a second container listed first, whose preStop sleep lets the app finish and ack first."""
    spec = pod_spec(render(chart, scenario_values(scenario)))
    init = [c["name"] for c in spec.get("initContainers", [])]
    regular = [c["name"] for c in spec["containers"]]
    sidecar = containers(spec)[SIDECAR]
    if native:
        assert (init, regular) == ([SIDECAR], ["app"])
        assert sidecar["restartPolicy"] == "Always"
    else:
        assert (init, regular) == ([], [SIDECAR, "app"])
        assert "restartPolicy" not in sidecar
    assert prestop_seconds(sidecar) == prestop


@scenarios
def test_socket_volume_is_shared_by_both_containers(chart: helm.Chart, scenario: str) -> None:
    manifests = render(chart, scenario_values(scenario))
    spec = pod_spec(manifests)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["sidecar-socket"]
    by_name = containers(spec)
    sidecar, app = by_name[SIDECAR], by_name["app"]
    mounts = [
        {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["sidecar-socket"] for c in (sidecar, app)
    ]
    assert mounts == ["/run/kafka-sidecar", "/run/kafka-sidecar"]
    app_env = environment(app, pod_name="p", secrets=SECRETS)
    address = sidecar_config(manifests).grpc_address
    assert app_env["SIDECAR_GRPC_ADDRESS"] == address
    assert Path(address.removeprefix("unix://")).parent == Path(mounts[0])


@scenarios
def test_pod_is_locked_down(chart: helm.Chart, scenario: str) -> None:
    spec = pod_spec(render(chart, scenario_values(scenario)))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    assert spec["serviceAccountName"] == FULLNAME
    for container in containers(spec).values():
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
    resources = containers(spec)[SIDECAR]["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@scenarios
def test_pdb_service_and_service_monitor_find_the_pods(chart: helm.Chart, scenario: str) -> None:
    manifests = render(chart, scenario_values(scenario))
    pod_labels = workload(manifests)["spec"]["template"]["metadata"]["labels"]
    assert _selects(workload(manifests)["spec"]["selector"]["matchLabels"], pod_labels)
    pdb = one(manifests, "PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1
    service = one(manifests, "Service")
    assert _selects(service["spec"]["selector"], pod_labels)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    if workload(manifests)["kind"] == "StatefulSet":
        assert workload(manifests)["spec"]["serviceName"] == service["metadata"]["name"]
    monitors = [m for m in manifests if m["kind"] == "ServiceMonitor"]
    if not SCENARIOS[scenario].get("serviceMonitor", {}).get("enabled"):
        assert monitors == []
        return
    (monitor,) = monitors
    assert _selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_sasl_credentials_come_from_the_existing_secret(chart: helm.Chart) -> None:
    sidecar = containers(pod_spec(render(chart, scenario_values("sasl-existing-secret"))))[SIDECAR]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in sidecar["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {
        "KAFKA_SASL_USERNAME": {"name": "kafka-credentials", "key": "username"},
        "KAFKA_SASL_PASSWORD": {"name": "kafka-credentials", "key": "password"},
    }


def test_tls_files_come_from_the_existing_secret(chart: helm.Chart) -> None:
    spec = pod_spec(render(chart, scenario_values("tls-existing-secret")))
    volume = {v["name"]: v for v in spec["volumes"]}["kafka-tls"]
    assert volume["secret"]["secretName"] == "kafka-tls"
    sidecar = containers(spec)[SIDECAR]
    mount = {m["name"]: m for m in sidecar["volumeMounts"]}["kafka-tls"]
    assert mount == {"name": "kafka-tls", "mountPath": "/etc/kafka-sidecar/tls", "readOnly": True}
    env = environment(sidecar, pod_name="p", secrets=SECRETS)
    assert env["KAFKA_SSL_CA_LOCATION"] == "/etc/kafka-sidecar/tls/ca.crt"
    assert env["KAFKA_SSL_CERTIFICATE_LOCATION"] == "/etc/kafka-sidecar/tls/tls.crt"
    assert env["KAFKA_SSL_KEY_LOCATION"] == "/etc/kafka-sidecar/tls/tls.key"
    assert env["KAFKA_SSL_KEY_PASSWORD"] == KEY_PASSWORD
    assert "kafka-tls" not in {m["name"] for m in containers(spec)["app"]["volumeMounts"]}


def test_the_grpc_token_is_mounted_in_both_containers_and_named_to_each(
    chart: helm.Chart, tmp_path: Path
) -> None:
    values = merge(REQUIRED_VALUES, {"auth": {"grpcToken": {"existingSecret": "app-token", "key": "t"}}})
    spec = pod_spec(render(chart, values))
    volume = {v["name"]: v for v in spec["volumes"]}["grpc-token"]
    assert volume["secret"] == {
        "secretName": "app-token",
        "items": [{"key": "t", "path": "token"}],
        "defaultMode": 0o440,
    }
    path = "/etc/kafka-sidecar/grpc-token/token"
    for name in (SIDECAR, "app"):
        container = containers(spec)[name]
        mount = {m["name"]: m for m in container["volumeMounts"]}["grpc-token"]
        assert mount == {"name": "grpc-token", "mountPath": "/etc/kafka-sidecar/grpc-token", "readOnly": True}
        assert environment(container, pod_name="p", secrets={})["SIDECAR_GRPC_TOKEN_FILE"] == path
    # the sidecar takes the rendered environment once the Secret's file is there
    token = tmp_path / "token"
    token.write_text("t0k3n\n")
    env = environment(containers(spec)[SIDECAR], pod_name="p", secrets={})
    assert Config.from_env({**env, "SIDECAR_GRPC_TOKEN_FILE": str(token)}).grpc_token_file == str(token)


def test_grpc_tls_files_come_from_their_secret(chart: helm.Chart) -> None:
    values = merge(
        REQUIRED_VALUES, {"auth": {"grpcTls": {"existingSecret": "sidecar-cert", "clientCaKey": "ca.crt"}}}
    )
    spec = pod_spec(render(chart, values))
    assert {v["name"]: v for v in spec["volumes"]}["grpc-tls"]["secret"]["secretName"] == "sidecar-cert"
    sidecar = containers(spec)[SIDECAR]
    env = environment(sidecar, pod_name="p", secrets={})
    assert env["SIDECAR_TLS_CERT_FILE"] == "/etc/kafka-sidecar/grpc-tls/tls.crt"
    assert env["SIDECAR_TLS_KEY_FILE"] == "/etc/kafka-sidecar/grpc-tls/tls.key"
    assert env["SIDECAR_TLS_CLIENT_CA_FILE"] == "/etc/kafka-sidecar/grpc-tls/ca.crt"
    assert "grpc-tls" not in {m["name"] for m in containers(spec)["app"]["volumeMounts"]}


# -- bad values --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"app": {"image": {"repository": ""}}}, "app.image.repository is required"),
        ({"kafka": {"bootstrapServers": ""}}, "kafka.bootstrapServers is required"),
        ({"kafka": {"groupId": ""}}, "kafka.groupId is required"),
        ({"sidecar": {"topics": ""}}, "sidecar.topics is required"),
        ({"sidecar": {"topicz": "orders"}}, "additional properties 'topicz' not allowed"),
        ({"sidecar": {"grpcAddress": "0.0.0.0:50051"}}, "additional properties 'grpcAddress' not allowed"),
        ({"sidecar": {"ordering": "random"}}, "at '/sidecar/ordering'"),
        ({"kafka": {"saslPassword": "hunter2"}}, "invalid propertyName 'saslPassword'"),
        ({"kafka": {"session.timeout.ms": 6000}}, "invalid propertyName 'session.timeout.ms'"),
        ({"kafka": {"groupInstanceId": "a"}}, "kafka.groupInstanceId cannot be set"),
        (
            {"sidecarContainer": {"extraEnv": [{"name": "SIDECAR_TOPICS", "value": "x"}]}},
            "at '/sidecarContainer/extraEnv/0/name'",
        ),
        ({"workload": "DaemonSet"}, "value must be one of 'StatefulSet', 'Deployment'"),
        ({"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds (20) must exceed"),
        (
            {"sidecarContainer": {"native": False}, "terminationGracePeriodSeconds": 25},
            "plus the preStop sleep (5s)",
        ),
        ({"sidecar": {"drainTimeoutMs": 60000}}, "the drain timeout (sidecar.drainTimeoutMs, 60s)"),
        (
            {"auth": {"sasl": {"existingSecret": "s"}}},
            "needs kafka.securityProtocol SASL_SSL or SASL_PLAINTEXT",
        ),
        (
            {"kafka": {"securityProtocol": "sasl_ssl"}, "auth": {"sasl": {"existingSecret": "s"}}},
            "needs kafka.saslMechanisms",
        ),
        ({"auth": {"tls": {"existingSecret": "t"}}}, "needs kafka.securityProtocol SSL or SASL_SSL"),
        (
            {"kafka": {"securityProtocol": "SSL"}, "auth": {"tls": {"existingSecret": "t", "certKey": "c"}}},
            "auth.tls.certKey and auth.tls.keyKey go together",
        ),
        ({"socket": {"dir": "/" + "d" * 100}}, "longer than a unix socket path may be"),
        (
            {"auth": {"grpcToken": {"existingSecret": "t"}}, "sidecar": {"grpcTokenFile": "/x"}},
            "sidecar.grpcTokenFile cannot be set together with auth.grpcToken.existingSecret",
        ),
        (
            {"auth": {"grpcTls": {"existingSecret": "t"}}, "sidecar": {"tlsKeyFile": "/x"}},
            "sidecar.tlsKeyFile cannot be set together with auth.grpcTls.existingSecret",
        ),
    ],
)
def test_bad_values_fail_with_a_message_naming_them(
    chart: helm.Chart, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(chart, merge(REQUIRED_VALUES, values))
