"""Unit tests for sidecar.config: pure, no broker, no network."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from sidecar.config import Config, ConfigError, is_service_link, render

BASE = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker-0:9092,broker-1:9092",
    "KAFKA_GROUP_ID": "orders-app",
    "SIDECAR_TOPICS": "orders",
}


def config(**overrides: str | None) -> Config:
    """BASE with overrides applied; None removes a variable."""
    env = {**BASE, **overrides}
    return Config.from_env({k: v for k, v in env.items() if v is not None})


def error(**overrides: str | None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config(**overrides)
    return info.value


# --- defaults ----------------------------------------------------------------------------------------------


def test_defaults() -> None:
    c = config()
    assert c.topics == ("orders",)
    assert c.grpc_address == "127.0.0.1:50051"
    assert c.http_address == ("127.0.0.1", 8080)
    assert (c.buffer_max_records, c.buffer_max_bytes) == (50000, 64 * 1024 * 1024)
    assert (c.max_batch_records, c.max_batch_bytes) == (1000, 1024 * 1024)
    assert (c.commit_interval_ms, c.revoke_grace_ms, c.drain_timeout_ms) == (1000, 10000, 20000)
    assert (c.log_level, c.log_format) == ("INFO", "text")
    assert dict(c.kafka) == {
        "bootstrap.servers": "broker-0:9092,broker-1:9092",
        "group.id": "orders-app",
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "session.timeout.ms": "10000",
        "heartbeat.interval.ms": "3000",
        "auto.offset.reset": "earliest",
        "statistics.interval.ms": "5000",
        "fetch.queue.backoff.ms": "20",
        "client.id": "kafka-sidecar",
    }
    assert not c.static_member
    assert c.readiness == "app"


def test_sources_cover_every_field_and_property() -> None:
    c = config(SIDECAR_LOG_LEVEL="debug")
    fields = {f.name for f in dataclasses.fields(Config)} - {"kafka", "sources"}
    assert set(c.sources) == fields | set(c.kafka)
    assert c.sources["log_level"] == "SIDECAR_LOG_LEVEL"
    assert c.sources["commit_interval_ms"] == "default"
    assert c.sources["group.id"] == "KAFKA_GROUP_ID"
    assert c.sources["session.timeout.ms"] == "default"


def test_config_is_immutable() -> None:
    c = config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.topics = ("x",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.kafka["group.id"] = "other"  # type: ignore[index]


def test_overrides() -> None:
    c = config(
        SIDECAR_TOPICS=" orders , payments,^audit-.* ",
        SIDECAR_GRPC_ADDRESS="unix:/var/run/sidecar/grpc.sock",
        SIDECAR_HTTP_ADDRESS="off",
        SIDECAR_BUFFER_MAX_RECORDS="1000",
        SIDECAR_BUFFER_MAX_BYTES="16MiB",
        SIDECAR_MAX_BATCH_RECORDS="100000",
        SIDECAR_MAX_BATCH_BYTES="512 KiB",
        SIDECAR_COMMIT_INTERVAL_MS="250",
        SIDECAR_REVOKE_GRACE_MS="0",
        SIDECAR_DRAIN_TIMEOUT_MS="0",
        SIDECAR_LOG_LEVEL="warn",
        SIDECAR_LOG_FORMAT="JSON",
        KAFKA_AUTO_OFFSET_RESET="latest",
        KAFKA_SESSION_TIMEOUT_MS="45000",
    )
    assert c.topics == ("orders", "payments", "^audit-.*")
    assert c.grpc_address == "unix:///var/run/sidecar/grpc.sock"
    assert c.http_address is None
    assert (c.buffer_max_records, c.buffer_max_bytes) == (1000, 16 << 20)
    assert (c.max_batch_records, c.max_batch_bytes) == (100000, 512 << 10)
    assert (c.commit_interval_ms, c.revoke_grace_ms, c.drain_timeout_ms) == (250, 0, 0)
    assert (c.log_level, c.log_format) == ("WARNING", "json")
    assert c.kafka["auto.offset.reset"] == "latest"
    assert c.sources["auto.offset.reset"] == "KAFKA_AUTO_OFFSET_RESET"
    assert c.kafka["session.timeout.ms"] == "45000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:0", "127.0.0.1:0"),
        ("0.0.0.0:50051", "0.0.0.0:50051"),
        ("localhost:65535", "localhost:65535"),
        ("[::1]:50051", "[::1]:50051"),
        ("[::]:1", "[::]:1"),
        ("unix:///tmp/s.sock", "unix:///tmp/s.sock"),
        ("unix:/tmp/s.sock", "unix:///tmp/s.sock"),
    ],
)
def test_grpc_address_forms(value: str, expected: str) -> None:
    assert config(SIDECAR_GRPC_ADDRESS=value).grpc_address == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:9090", ("0.0.0.0", 9090)),
        ("[::]:0", ("::", 0)),
        ("OFF", None),
        ("sidecar.local:80", ("sidecar.local", 80)),
    ],
)
def test_http_address_forms(value: str, expected: tuple[str, int] | None) -> None:
    assert config(SIDECAR_HTTP_ADDRESS=value).http_address == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", 1), ("4096", 4096), ("1KiB", 1024), ("2mib", 2 << 20), ("1GiB", 1 << 30), ("8Mi", 8 << 20)],
)
def test_size_suffixes(value: str, expected: int) -> None:
    assert config(SIDECAR_BUFFER_MAX_BYTES=value).buffer_max_bytes == expected


# --- pass-through naming -----------------------------------------------------------------------------------


def test_kafka_pass_through_naming() -> None:
    c = config(
        KAFKA_FETCH_MAX_BYTES="1000000",
        KAFKA_SASL_MECHANISM="PLAIN",
        KAFKA_SSL__ENGINE__CALLBACK__DATA="x",
        KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS="1000",
    )
    assert c.kafka["fetch.max.bytes"] == "1000000"
    assert c.kafka["sasl.mechanism"] == "PLAIN"
    assert c.kafka["ssl_engine_callback_data"] == "x"
    assert c.kafka["topic.metadata.refresh.interval.ms"] == "1000"
    assert c.env_name("ssl_engine_callback_data") == "KAFKA_SSL__ENGINE__CALLBACK__DATA"
    assert c.env_name("session.timeout.ms") == "KAFKA_SESSION_TIMEOUT_MS"  # a default: the canonical name
    assert c.env_name("socket.timeout.ms") == "KAFKA_SOCKET_TIMEOUT_MS"  # not set at all


def test_kafka_values_pass_through_verbatim() -> None:
    assert config(KAFKA_SASL_PASSWORD=" p@ss word ").kafka["sasl.password"] == " p@ss word "


def test_kubernetes_service_links_are_ignored() -> None:
    links = {
        "KAFKA_PORT": "tcp://10.0.0.7:9092",
        "KAFKA_SERVICE_HOST": "10.0.0.7",
        "KAFKA_SERVICE_PORT": "9092",
        "KAFKA_SERVICE_PORT_TCP_CLIENT": "9092",
        "KAFKA_PORT_9092_TCP": "tcp://10.0.0.7:9092",
        "KAFKA_PORT_9092_TCP_ADDR": "10.0.0.7",
        "KAFKA_PORT_9092_TCP_PORT": "9092",
        "KAFKA_PORT_9092_TCP_PROTO": "tcp",
        "KAFKA_HEADLESS_SERVICE_HOST": "10.0.0.8",
        "SIDECAR_SERVICE_HOST": "10.0.0.9",
        "SIDECAR_PORT_8080_TCP_ADDR": "10.0.0.9",
    }
    assert dict(config(**links).kafka) == dict(config().kafka)


@given(
    st.from_regex(r"[a-z0-9]{1,8}(?:[._][a-z0-9]{1,8}){0,4}", fullmatch=True),
    st.text(min_size=1).filter(str.strip),
)
def test_env_name_round_trips(suffix: str, value: str) -> None:
    name = "x." + suffix  # keeps clear of the properties config.py interprets
    c = config()
    variable = c.env_name(name)
    assume(not is_service_link(variable))  # e.g. x.port: shaped like a Kubernetes service link
    c2 = Config.from_env({**BASE, variable: value})
    assert c2.kafka[name] == value
    assert c2.env_name(name) == variable


# --- static membership -------------------------------------------------------------------------------------


def test_pod_name_enables_static_membership() -> None:
    c = config(POD_NAME="orders-app-0")
    assert c.static_member
    assert c.kafka["group.instance.id"] == "orders-app-0"
    assert c.sources["group.instance.id"] == "POD_NAME"
    assert c.env_name("group.instance.id") == "POD_NAME"
    assert c.kafka["client.id"] == "kafka-sidecar-orders-app-0"


def test_group_instance_id_beats_pod_name() -> None:
    c = config(POD_NAME="orders-app-0", KAFKA_GROUP_INSTANCE_ID="member-a")
    assert c.kafka["group.instance.id"] == "member-a"
    assert c.sources["group.instance.id"] == "KAFKA_GROUP_INSTANCE_ID"
    assert c.kafka["client.id"] == "kafka-sidecar-member-a"


@pytest.mark.parametrize("pod_name", ["", "   "])
def test_empty_pod_name_is_ignored(pod_name: str) -> None:
    c = config(POD_NAME=pod_name)
    assert not c.static_member
    assert c.kafka["client.id"] == "kafka-sidecar"


def test_explicit_client_id_is_kept() -> None:
    assert config(POD_NAME="p", KAFKA_CLIENT_ID="mine").kafka["client.id"] == "mine"


# --- KIP-848 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["consumer", "CONSUMER"])
def test_kip848_drops_classic_defaults(protocol: str) -> None:
    c = config(KAFKA_GROUP_PROTOCOL=protocol)
    assert c.kafka["group.protocol"] == "consumer"
    for name in ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"):
        assert name not in c.kafka
        assert name not in c.sources
    assert c.kafka["enable.auto.commit"] == "false"
    assert c.kafka["auto.offset.reset"] == "earliest"


def test_kip848_keeps_static_membership_and_remote_assignor() -> None:
    c = config(KAFKA_GROUP_PROTOCOL="consumer", KAFKA_GROUP_REMOTE_ASSIGNOR="uniform", POD_NAME="p-0")
    assert c.kafka["group.remote.assignor"] == "uniform"
    assert c.static_member


def test_classic_protocol_is_normal() -> None:
    c = config(KAFKA_GROUP_PROTOCOL="classic")
    assert c.kafka["partition.assignment.strategy"] == "cooperative-sticky"
    assert c.kafka["session.timeout.ms"] == "10000"


@pytest.mark.parametrize(
    "variable",
    [
        "KAFKA_PARTITION_ASSIGNMENT_STRATEGY",
        "KAFKA_SESSION_TIMEOUT_MS",
        "KAFKA_HEARTBEAT_INTERVAL_MS",
        "KAFKA_GROUP_PROTOCOL_TYPE",
    ],
)
def test_kip848_rejects_classic_only_properties(variable: str) -> None:
    err = error(KAFKA_GROUP_PROTOCOL="consumer", **{variable: "1000"})
    assert err.variable == variable
    assert "KIP-848" in str(err)


# --- auto-commit -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["KAFKA_ENABLE_AUTO_COMMIT", "KAFKA_ENABLE_AUTO_OFFSET_STORE"])
@pytest.mark.parametrize("value", ["true", "True", "1", "t", "yes"])
def test_auto_commit_rejected(variable: str, value: str) -> None:
    err = error(**{variable: value})
    assert err.variable == variable
    assert "acked" in str(err)


@pytest.mark.parametrize("value", ["false", "FALSE", "f", "0"])
def test_auto_commit_false_accepted(value: str) -> None:
    c = config(KAFKA_ENABLE_AUTO_COMMIT=value, KAFKA_ENABLE_AUTO_OFFSET_STORE=value)
    assert c.kafka["enable.auto.commit"] == c.kafka["enable.auto.offset.store"] == "false"
    assert c.sources["enable.auto.commit"] == "KAFKA_ENABLE_AUTO_COMMIT"


# --- errors ------------------------------------------------------------------------------------------------

BAD: list[tuple[dict[str, str | None], str]] = [
    # required
    ({"KAFKA_BOOTSTRAP_SERVERS": None}, "KAFKA_BOOTSTRAP_SERVERS"),
    ({"KAFKA_GROUP_ID": None}, "KAFKA_GROUP_ID"),
    ({"SIDECAR_TOPICS": None}, "SIDECAR_TOPICS"),
    # empty values
    ({"KAFKA_GROUP_ID": ""}, "KAFKA_GROUP_ID"),
    ({"KAFKA_CLIENT_RACK": "  "}, "KAFKA_CLIENT_RACK"),
    ({"SIDECAR_TOPICS": ""}, "SIDECAR_TOPICS"),
    ({"SIDECAR_LOG_LEVEL": ""}, "SIDECAR_LOG_LEVEL"),
    ({"KAFKA_GROUP_INSTANCE_ID": ""}, "KAFKA_GROUP_INSTANCE_ID"),
    # topics
    ({"SIDECAR_TOPICS": "a,,b"}, "SIDECAR_TOPICS"),
    ({"SIDECAR_TOPICS": "a,b,"}, "SIDECAR_TOPICS"),
    ({"SIDECAR_TOPICS": "a, a"}, "SIDECAR_TOPICS"),
    ({"SIDECAR_TOPICS": "has space"}, "SIDECAR_TOPICS"),
    ({"SIDECAR_TOPICS": "orders/eu"}, "SIDECAR_TOPICS"),
    ({"SIDECAR_TOPICS": ".."}, "SIDECAR_TOPICS"),
    ({"SIDECAR_TOPICS": "x" * 250}, "SIDECAR_TOPICS"),
    ({"SIDECAR_TOPICS": "^orders-(eu"}, "SIDECAR_TOPICS"),
    # addresses
    ({"SIDECAR_GRPC_ADDRESS": "50051"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": "localhost:65536"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": "localhost:-1"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": ":50051"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": "::1:50051"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": "[nope]:50051"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": "unix:relative.sock"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": "unix:///" + "d" * 120}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_GRPC_ADDRESS": "http://localhost:50051"}, "SIDECAR_GRPC_ADDRESS"),
    ({"SIDECAR_HTTP_ADDRESS": "8080"}, "SIDECAR_HTTP_ADDRESS"),
    ({"SIDECAR_HTTP_ADDRESS": "unix:///tmp/h.sock"}, "SIDECAR_HTTP_ADDRESS"),
    ({"SIDECAR_HTTP_ADDRESS": "disabled"}, "SIDECAR_HTTP_ADDRESS"),
    # numbers
    ({"SIDECAR_BUFFER_MAX_RECORDS": "0"}, "SIDECAR_BUFFER_MAX_RECORDS"),
    ({"SIDECAR_BUFFER_MAX_RECORDS": "-5"}, "SIDECAR_BUFFER_MAX_RECORDS"),
    ({"SIDECAR_BUFFER_MAX_RECORDS": "1e6"}, "SIDECAR_BUFFER_MAX_RECORDS"),
    ({"SIDECAR_BUFFER_MAX_RECORDS": "1_000"}, "SIDECAR_BUFFER_MAX_RECORDS"),
    ({"SIDECAR_BUFFER_MAX_RECORDS": "\u0661\u0662"}, "SIDECAR_BUFFER_MAX_RECORDS"),  # Arabic-Indic digits
    ({"SIDECAR_BUFFER_MAX_BYTES": "0MiB"}, "SIDECAR_BUFFER_MAX_BYTES"),
    ({"SIDECAR_BUFFER_MAX_BYTES": "64MB"}, "SIDECAR_BUFFER_MAX_BYTES"),
    ({"SIDECAR_BUFFER_MAX_BYTES": "1.5GiB"}, "SIDECAR_BUFFER_MAX_BYTES"),
    ({"SIDECAR_MAX_BATCH_RECORDS": "0"}, "SIDECAR_MAX_BATCH_RECORDS"),
    ({"SIDECAR_MAX_BATCH_RECORDS": "100001"}, "SIDECAR_MAX_BATCH_RECORDS"),
    ({"SIDECAR_MAX_BATCH_BYTES": "0"}, "SIDECAR_MAX_BATCH_BYTES"),
    ({"SIDECAR_COMMIT_INTERVAL_MS": "abc"}, "SIDECAR_COMMIT_INTERVAL_MS"),
    ({"SIDECAR_COMMIT_INTERVAL_MS": "0"}, "SIDECAR_COMMIT_INTERVAL_MS"),
    ({"SIDECAR_REVOKE_GRACE_MS": "-1"}, "SIDECAR_REVOKE_GRACE_MS"),
    ({"SIDECAR_REVOKE_GRACE_MS": "300000"}, "SIDECAR_REVOKE_GRACE_MS"),
    ({"SIDECAR_REVOKE_GRACE_MS": "60000", "KAFKA_MAX_POLL_INTERVAL_MS": "60000"}, "SIDECAR_REVOKE_GRACE_MS"),
    ({"KAFKA_MAX_POLL_INTERVAL_MS": "9000", "KAFKA_SESSION_TIMEOUT_MS": "6000"}, "SIDECAR_REVOKE_GRACE_MS"),
    ({"SIDECAR_DRAIN_TIMEOUT_MS": "soon"}, "SIDECAR_DRAIN_TIMEOUT_MS"),
    # logging
    ({"SIDECAR_LOG_LEVEL": "verbose"}, "SIDECAR_LOG_LEVEL"),
    ({"SIDECAR_LOG_FORMAT": "yaml"}, "SIDECAR_LOG_FORMAT"),
    # unknown / misplaced variables
    ({"SIDECAR_COMMIT_INTERVAL": "1000"}, "SIDECAR_COMMIT_INTERVAL"),
    ({"SIDECAR_TOPIC": "orders"}, "SIDECAR_TOPIC"),
    ({"KAFKA_TOPICS": "orders"}, "KAFKA_TOPICS"),
    ({"KAFKA_TOPIC": "orders"}, "KAFKA_TOPIC"),
    ({"KAFKA_": "x"}, "KAFKA_"),
    ({"KAFKA_FETCH-MAX-BYTES": "1"}, "KAFKA_FETCH-MAX-BYTES"),
    ({"KAFKA_group_id": "other"}, "KAFKA_group_id"),
    # librdkafka properties checked here
    ({"KAFKA_GROUP_PROTOCOL": "eager"}, "KAFKA_GROUP_PROTOCOL"),
    ({"KAFKA_SESSION_TIMEOUT_MS": "10s"}, "KAFKA_SESSION_TIMEOUT_MS"),
    ({"KAFKA_SESSION_TIMEOUT_MS": "0"}, "KAFKA_SESSION_TIMEOUT_MS"),
    ({"KAFKA_SESSION_TIMEOUT_MS": "2000"}, "KAFKA_SESSION_TIMEOUT_MS"),  # <= default heartbeat 3000
    ({"KAFKA_SESSION_TIMEOUT_MS": "400000"}, "KAFKA_SESSION_TIMEOUT_MS"),  # > default max.poll 300000
    ({"KAFKA_HEARTBEAT_INTERVAL_MS": "10000"}, "KAFKA_HEARTBEAT_INTERVAL_MS"),  # == session timeout
    ({"KAFKA_MAX_POLL_INTERVAL_MS": "5000"}, "KAFKA_MAX_POLL_INTERVAL_MS"),  # < session timeout
    ({"KAFKA_MAX_POLL_INTERVAL_MS": "x"}, "KAFKA_MAX_POLL_INTERVAL_MS"),
    ({"KAFKA_GROUP_INSTANCE_ID": "pod 0"}, "KAFKA_GROUP_INSTANCE_ID"),
    ({"POD_NAME": "pod/0"}, "POD_NAME"),
]


@pytest.mark.parametrize(
    ("overrides", "variable"), BAD, ids=[f"{v}={next(iter(o.values()))!r}"[:60] for o, v in BAD]
)
def test_bad_variable_is_named(overrides: dict[str, str | None], variable: str) -> None:
    err = error(**overrides)
    assert err.variable == variable
    message = str(err)
    if variable in overrides:
        assert message.startswith(variable + ("=" if overrides[variable] is not None else " is not set"))
    assert message.startswith(variable)
    assert "\n" not in message
    assert err.expected
    assert isinstance(err, ValueError)


def test_error_message_format() -> None:
    assert str(error(SIDECAR_COMMIT_INTERVAL_MS="abc")) == (
        'SIDECAR_COMMIT_INTERVAL_MS="abc": expected a whole number of milliseconds > 0'
    )
    err = error(KAFKA_GROUP_ID=None)
    assert str(err) == "KAFKA_GROUP_ID is not set: expected the consumer group id"
    assert (err.variable, err.expected) == ("KAFKA_GROUP_ID", "the consumer group id")


def test_every_missing_required_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({})
    assert str(caught.value) == (
        "KAFKA_BOOTSTRAP_SERVERS, KAFKA_GROUP_ID and SIDECAR_TOPICS are not set: expected the Kafka "
        "brokers to bootstrap from (host:port[,host:port...]); the consumer group id; the topics to consume "
        "(comma-separated names or ^regexes)"
    )
    assert caught.value.variable == "KAFKA_BOOTSTRAP_SERVERS"
    err = error(KAFKA_GROUP_ID=None, SIDECAR_TOPICS=None)
    assert str(err).startswith(
        "KAFKA_GROUP_ID and SIDECAR_TOPICS are not set: expected the consumer group id;"
    )


def test_error_messages_stay_one_line_and_hide_secrets() -> None:
    assert str(error(SIDECAR_TOPICS="a\nb")).count("\n") == 0
    err = error(KAFKA_SASL_PASSWORD="hunter2", KAFKA_sasl_password="hunter3")  # two variables, one property
    assert err.variable == "KAFKA_sasl_password"
    assert "hunter3" not in str(err)
    assert "****" in str(err)


def test_unknown_sidecar_variable_lists_known_ones() -> None:
    message = str(error(SIDECAR_COMMIT_INTERVAL="1000"))
    assert "unknown variable" in message
    assert "did you mean SIDECAR_COMMIT_INTERVAL_MS?" in message
    assert "SIDECAR_DRAIN_TIMEOUT_MS" in message


def test_misplaced_topics_points_to_sidecar_topics() -> None:
    assert "SIDECAR_TOPICS" in str(error(KAFKA_TOPICS="orders"))


def test_revoke_grace_names_max_poll_interval() -> None:
    message = str(error(SIDECAR_REVOKE_GRACE_MS="300000"))
    assert "max.poll.interval.ms (300000" in message
    assert config(SIDECAR_REVOKE_GRACE_MS="299999").revoke_grace_ms == 299999
    raised = config(SIDECAR_REVOKE_GRACE_MS="500000", KAFKA_MAX_POLL_INTERVAL_MS="600000")
    assert raised.revoke_grace_ms == 500000


def test_unknown_kafka_properties_are_left_to_librdkafka() -> None:
    assert config(KAFKA_NO_SUCH_PROPERTY="1").kafka["no.such.property"] == "1"


# --- masking and rendering ---------------------------------------------------------------------------------

SECRETS = {
    "KAFKA_SASL_PASSWORD": "hunter2",
    "KAFKA_SSL_KEY_PASSWORD": "keypass",
    "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "oauth-secret",
    "KAFKA_SASL_JAAS_CONFIG": "org.apache.kafka...PlainLoginModule required;",
    "KAFKA_SASL_OAUTHBEARER_CONFIG": "principal=admin",
    "KAFKA_SSL_KEY_PEM": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
    "KAFKA_SSL_CERTIFICATE_PEM": "-----BEGIN CERTIFICATE-----\nxyz",
}


def test_describe_masks_secrets_not_paths() -> None:
    c = config(**SECRETS, KAFKA_SSL_KEY_LOCATION="/etc/tls/key.pem", KAFKA_SASL_USERNAME="svc-orders")
    rows = {name: (value, source) for name, value, source in c.describe()}
    for variable in SECRETS:
        name = variable.removeprefix("KAFKA_").lower().replace("_", ".")
        assert rows[name] == ("****", variable)
    assert rows["ssl.key.location"] == ("/etc/tls/key.pem", "KAFKA_SSL_KEY_LOCATION")
    assert rows["sasl.username"][0] == "svc-orders"
    assert c.kafka["sasl.password"] == "hunter2"  # masked for display only


def test_describe_names_and_order() -> None:
    c = config(SIDECAR_HTTP_ADDRESS="off", SIDECAR_TOPICS="a,b")
    rows = c.describe()
    names = [name for name, _, _ in rows]
    assert names[0] == "SIDECAR_TOPICS"
    settings = [n for n in names if n.startswith("SIDECAR_")]
    assert names[: len(settings)] == settings
    assert names[len(settings) :] == sorted(c.kafka)
    values = {name: value for name, value, _ in rows}
    assert values["SIDECAR_TOPICS"] == "a,b"
    assert values["SIDECAR_HTTP_ADDRESS"] == "off"
    assert config(SIDECAR_HTTP_ADDRESS="[::1]:9").describe()[2][1] == "[::1]:9"


def test_render_shows_sections_sources_and_masks() -> None:
    text = render(config(**SECRETS, POD_NAME="orders-app-1", SIDECAR_LOG_LEVEL="debug"))
    assert "Sidecar settings" in text
    assert "librdkafka properties" in text
    assert "hunter2" not in text
    assert "BEGIN" not in text
    lines = text.splitlines()
    assert any(line.split() == ["SIDECAR_LOG_LEVEL", "DEBUG", "SIDECAR_LOG_LEVEL"] for line in lines)
    assert any(line.split() == ["SIDECAR_COMMIT_INTERVAL_MS", "1000", "default"] for line in lines)
    assert any(line.split() == ["group.instance.id", "orders-app-1", "POD_NAME"] for line in lines)
    assert any(line.split() == ["sasl.password", "****", "KAFKA_SASL_PASSWORD"] for line in lines)
    # aligned: the value column starts at the same place in every row of both tables
    rows = [line for line in lines if line.startswith("  ")]
    value_columns = {len(line) - len(line[2 + len(line.split()[0]) :].lstrip()) for line in rows}
    assert len(value_columns) == 1


# --- properties --------------------------------------------------------------------------------------------

_TOPIC = st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True).filter(lambda t: t not in (".", ".."))


@given(st.lists(_TOPIC, min_size=1, max_size=8, unique=True), st.sampled_from([",", ", ", " ,", " , "]))
def test_any_valid_topic_list_round_trips(topics: list[str], separator: str) -> None:
    c = Config.from_env({**BASE, "SIDECAR_TOPICS": separator.join(topics)})
    assert c.topics == tuple(topics)
    shown = {name: value for name, value, _ in c.describe()}["SIDECAR_TOPICS"]
    assert Config.from_env({**BASE, "SIDECAR_TOPICS": shown}) == c


# --- delivery semantics (leases, retries, dead letters, ordering, gap metadata) -----------------------


def test_delivery_defaults() -> None:
    c = config()
    assert c.ordering == "partition"
    assert (c.ack_timeout_ms, c.retry_backoff_ms, c.retry_backoff_max_ms) == (60000, 1000, 60000)
    assert (c.max_delivery_attempts, c.dlq_topic, c.on_exhausted) == (5, None, "block")
    assert c.gap_metadata_max_bytes == 4000


def test_delivery_settings_parse() -> None:
    c = config(
        SIDECAR_ORDERING="Key",
        SIDECAR_ACK_TIMEOUT_MS="0",
        SIDECAR_RETRY_BACKOFF_MS="0",
        SIDECAR_RETRY_BACKOFF_MAX_MS="0",
        SIDECAR_MAX_DELIVERY_ATTEMPTS="0",
        SIDECAR_DLQ_TOPIC="orders.dlq",
        SIDECAR_ON_EXHAUSTED="SKIP",
        SIDECAR_GAP_METADATA_MAX_BYTES="0",
    )
    assert (c.ordering, c.ack_timeout_ms, c.max_delivery_attempts) == ("key", 0, 0)
    assert (c.dlq_topic, c.on_exhausted, c.gap_metadata_max_bytes) == ("orders.dlq", "skip", 0)
    assert dict((n, v) for n, v, _ in c.describe())["SIDECAR_DLQ_TOPIC"] == "orders.dlq"


def test_empty_dlq_topic_means_none() -> None:
    assert config(SIDECAR_DLQ_TOPIC="").dlq_topic is None
    assert dict((n, v) for n, v, _ in config().describe())["SIDECAR_DLQ_TOPIC"] == "(none)"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SIDECAR_ORDERING", "per-key", "partition, key or unordered"),
        ("SIDECAR_ACK_TIMEOUT_MS", "-1", "a whole number of milliseconds >= 0"),
        ("SIDECAR_RETRY_BACKOFF_MS", "1s", "a whole number of milliseconds >= 0"),
        ("SIDECAR_MAX_DELIVERY_ATTEMPTS", "many", "a whole number of deliveries >= 0 (0 = unlimited)"),
        ("SIDECAR_DLQ_TOPIC", "bad topic", "a topic name made of"),
        ("SIDECAR_ON_EXHAUSTED", "retry", "block or skip"),
        ("SIDECAR_GAP_METADATA_MAX_BYTES", "2000000", "a whole number of bytes from 0 (off) to 1000000"),
    ],
)
def test_bad_delivery_settings_name_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config(**{variable: value})
    assert info.value.variable == variable
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_backoff_cap_below_backoff_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        config(SIDECAR_RETRY_BACKOFF_MS="5000", SIDECAR_RETRY_BACKOFF_MAX_MS="1000")
    assert info.value.variable == "SIDECAR_RETRY_BACKOFF_MAX_MS"
    assert "SIDECAR_RETRY_BACKOFF_MS (5000)" in str(info.value)


def test_readiness_setting() -> None:
    assert config(SIDECAR_READINESS="JOINED").readiness == "joined"
    assert config(SIDECAR_READINESS="app").sources["readiness"] == "SIDECAR_READINESS"
    with pytest.raises(ConfigError) as info:
        config(SIDECAR_READINESS="always")
    assert info.value.variable == "SIDECAR_READINESS"
    assert "app or joined" in str(info.value)


def test_lag_statistics_interval_is_a_visible_default_and_can_be_turned_off() -> None:
    assert config().sources["statistics.interval.ms"] == "default"
    c = config(KAFKA_STATISTICS_INTERVAL_MS="0")
    assert c.kafka["statistics.interval.ms"] == "0"
    assert c.sources["statistics.interval.ms"] == "KAFKA_STATISTICS_INTERVAL_MS"
