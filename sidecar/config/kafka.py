"""The ``KAFKA_*`` variables as librdkafka properties, and the rules the sidecar holds them to:
auto-commit off, the group protocol and its timeouts, static membership from ``POD_NAME``, and the
defaults it sets unless the environment does."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sidecar.config.errors import ConfigError, Invalid
from sidecar.config.naming import (
    DEFAULT,
    KAFKA_PREFIX,
    POD_NAME,
    PROPERTY_NAME,
    is_secret,
    is_service_link,
    property_name,
)
from sidecar.config.settings import BY_FIELD
from sidecar.config.values import check_kafka_name, whole

# When librdkafka's prefetch queue passes queued.max.messages.kbytes it waits this long before it
# fetches that partition again: 1000 ms by default, so whenever the app is slower than the fetch (the
# queue fills; the backlog is the sidecar's own limit) every partition went quiet for a second once
# the queue had drained. At 1 KiB records that halved the sidecar's throughput.
FETCH_QUEUE_BACKOFF_MS = "20"

# librdkafka properties the sidecar sets unless the environment does.
_KAFKA_DEFAULTS = {
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.auto.commit": "false",
    "enable.auto.offset.store": "false",
    "session.timeout.ms": "10000",
    "heartbeat.interval.ms": "3000",
    "auto.offset.reset": "earliest",
    # librdkafka statistics feed kafka_consumer_lag (0 turns them, and the lag metric, off).
    "statistics.interval.ms": "5000",
    "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
}
# Rejected by librdkafka with group.protocol=consumer (KIP-848): the broker owns them.
_CLASSIC_ONLY = {
    "partition.assignment.strategy": "the broker assigns; use KAFKA_GROUP_REMOTE_ASSIGNOR",
    "session.timeout.ms": "it is a broker-side group config",
    "heartbeat.interval.ms": "it is a broker-side group config",
    "group.protocol.type": "it only applies to the classic protocol",
}
_MAX_POLL_INTERVAL_DEFAULT = 300000  # librdkafka's default for max.poll.interval.ms
_CLIENT_ID = "kafka-sidecar"


def read_kafka_variables(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """All ``KAFKA_*`` variables as librdkafka properties, and the variable each came from."""
    properties: dict[str, str] = {}
    sources: dict[str, str] = {}
    for variable in sorted(environ):
        if not variable.startswith(KAFKA_PREFIX) or is_service_link(variable):
            continue
        name, value = property_name(variable), environ[variable]
        if not PROPERTY_NAME.fullmatch(name):
            raise ConfigError(
                variable,
                "a librdkafka property: KAFKA_ + the property in upper case, with . written as _ and _ as __",
                value,
            )
        if name.endswith(".file"):  # KAFKA_SASL_PASSWORD_FILE: the secret comes from a file
            name, value = _secret_from_file(variable, name.removesuffix(".file"), value)
        if name == "topic" or name in BY_FIELD:
            setting = BY_FIELD.get(name, BY_FIELD["topics"]).variable
            raise ConfigError(variable, f"no such librdkafka property; this is set with {setting}", value)
        if name in sources:
            expected = f"one variable per property; {sources[name]} already sets {name}"
            raise ConfigError(variable, expected, environ[variable])
        if not value.strip():
            raise ConfigError(variable, f"a value (unset {variable} for librdkafka's default)", value)
        properties[name], sources[name] = value, variable
    return properties, sources


def _secret_from_file(variable: str, name: str, path: str) -> tuple[str, str]:
    """(property, value) for ``KAFKA_<PROPERTY>_FILE=path``: the Kubernetes and Docker way to pass a secret
    (a mounted Secret) without putting it in the environment. Only secret properties (passwords, JAAS
    and OAuth configs, keys) may come from a file; librdkafka has no property ending in ``.file``."""
    if not is_secret(name):
        expected = (
            f"a secret property to read from a file (a password, sasl.jaas.config, ...); "
            f"{name} is not one: set {variable.removesuffix('_FILE')} instead"
        )
        raise ConfigError(variable, expected, path)
    try:
        with open(path.strip(), encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        problem = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(variable, "", path, problem=f"cannot read the secret's file: {problem}") from None
    if not value.strip():
        raise ConfigError(variable, "", path, problem="the secret's file is empty")
    return name, value


class KafkaProperties:
    """The librdkafka properties being assembled, with their sources."""

    def __init__(self, properties: dict[str, str], sources: dict[str, str]) -> None:
        self.properties = properties
        self.sources = sources

    def explicit(self, name: str) -> bool:
        return self.sources.get(name, DEFAULT) != DEFAULT

    def fail(self, name: str, expected: str) -> ConfigError:
        return ConfigError(self.sources[name], expected, self.properties[name])

    def normalize(self, name: str, parse: Callable[[str], str]) -> None:
        if name in self.properties:
            try:
                self.properties[name] = parse(self.properties[name].strip())
            except Invalid as exc:
                raise self.fail(name, str(exc)) from None

    def set_default(self, name: str, value: str) -> None:
        if name not in self.properties:
            self.properties[name], self.sources[name] = value, DEFAULT

    def number(self, name: str, high: int) -> int | None:
        if name not in self.properties:
            return None
        expected = f"a whole number of milliseconds from 1 to {high}"
        try:
            value = whole(self.properties[name].strip(), expected, 1, high)
        except Invalid as exc:
            raise self.fail(name, str(exc)) from None
        self.properties[name] = str(value)
        return value


def _only_false(text: str) -> str:
    if text.lower() not in ("false", "f", "0"):
        raise Invalid("false: the sidecar stores and commits only offsets the app acked")
    return "false"


def _group_protocol(text: str) -> str:
    if text.lower() not in ("classic", "consumer"):
        raise Invalid("classic or consumer")
    return text.lower()


def apply_kafka_rules(kafka: KafkaProperties, environ: Mapping[str, str]) -> None:
    kafka.normalize("enable.auto.commit", _only_false)
    kafka.normalize("enable.auto.offset.store", _only_false)
    kafka.normalize("group.protocol", _group_protocol)
    classic = kafka.properties.get("group.protocol", "classic") == "classic"
    if not classic:
        for name, why in _CLASSIC_ONLY.items():
            if name in kafka.properties:
                raise kafka.fail(name, f"unset with KAFKA_GROUP_PROTOCOL=consumer (KIP-848): {why}")
    for name, value in _KAFKA_DEFAULTS.items():
        if classic or name not in _CLASSIC_ONLY:
            kafka.set_default(name, value)
    _apply_static_membership(kafka, environ)
    _check_group_timeouts(kafka)


def _apply_static_membership(kafka: KafkaProperties, environ: Mapping[str, str]) -> None:
    pod_name = environ.get(POD_NAME, "").strip()
    if "group.instance.id" not in kafka.properties and pod_name:
        kafka.properties["group.instance.id"], kafka.sources["group.instance.id"] = pod_name, POD_NAME
    instance_id = kafka.properties.get("group.instance.id")
    if instance_id is None:
        kafka.set_default("client.id", _CLIENT_ID)
        return
    try:
        check_kafka_name(instance_id, "a group.instance.id")
    except Invalid as exc:
        raise kafka.fail("group.instance.id", str(exc)) from None
    kafka.set_default("client.id", f"{_CLIENT_ID}-{instance_id}")


def _check_group_timeouts(kafka: KafkaProperties) -> None:
    session = kafka.number("session.timeout.ms", 3600000)
    heartbeat = kafka.number("heartbeat.interval.ms", 3600000)
    max_poll = kafka.number("max.poll.interval.ms", 86400000)
    if session is not None and heartbeat is not None and heartbeat >= session:
        if kafka.explicit("heartbeat.interval.ms"):
            raise kafka.fail("heartbeat.interval.ms", f"milliseconds < session.timeout.ms ({session})")
        raise kafka.fail("session.timeout.ms", f"milliseconds > heartbeat.interval.ms ({heartbeat})")
    if session is not None and session > (max_poll or _MAX_POLL_INTERVAL_DEFAULT):
        if max_poll is not None:
            raise kafka.fail("max.poll.interval.ms", f"milliseconds >= session.timeout.ms ({session})")
        limit = f"{_MAX_POLL_INTERVAL_DEFAULT}, librdkafka's default"
        raise kafka.fail("session.timeout.ms", f"milliseconds <= max.poll.interval.ms ({limit})")


def check_revoke_grace(revoke_grace_ms: int, kafka: KafkaProperties) -> None:
    """The revoke callback blocks the poll thread for up to the grace; librdkafka evicts the member after
    max.poll.interval.ms without a poll."""
    max_poll = int(kafka.properties.get("max.poll.interval.ms", _MAX_POLL_INTERVAL_DEFAULT))
    if revoke_grace_ms >= max_poll:
        origin = kafka.sources.get("max.poll.interval.ms", "librdkafka's default")
        expected = (
            f"milliseconds < max.poll.interval.ms ({max_poll}, {origin}): "
            "the revoke callback blocks the poll thread that long"
        )
        raise ConfigError("SIDECAR_REVOKE_GRACE_MS", expected, str(revoke_grace_ms))
