"""Configuration: environment variables in, one validated immutable :class:`Config` out.

The sidecar is configured only by environment variables. That is the twelve-factor way, and it is what a
Kubernetes pod spec offers natively: ``env``/``envFrom`` from ConfigMaps and Secrets, the downward API
(``POD_NAME``), ``kubectl set env``. There is no config file to mount, template or keep in sync.

Naming
------
``SIDECAR_*``
    The sidecar's own settings (topics, addresses, buffer and batch limits, timings, logging); the table is
    ``_SETTINGS`` below. Any other ``SIDECAR_*`` variable is an error, so a typo cannot pass silently.
``KAFKA_*``
    Passed through to librdkafka. The property name is the rest of the variable name, lower-cased, with
    ``_`` read as ``.``; a double underscore ``__`` stands for a literal ``_``::

        KAFKA_BOOTSTRAP_SERVERS   -> bootstrap.servers
        KAFKA_SESSION_TIMEOUT_MS  -> session.timeout.ms
        KAFKA_FOO__BAR_BAZ        -> foo_bar.baz

    (``.`` cannot appear in a portable environment variable name, hence the mapping; ``__`` exists so that
    every property name can be written, though hardly any has a ``_``.) Names and values
    are librdkafka's to judge: it rejects unknown properties when the consumer is created, and
    :meth:`Config.env_name` turns its property name back into the variable to blame. Only the properties
    this module relies on are checked here (auto-commit, the group protocol, the group timeouts).
``POD_NAME``
    When set (downward API: ``fieldRef: {fieldPath: metadata.name}``) and ``KAFKA_GROUP_INSTANCE_ID`` is
    not, it becomes ``group.instance.id``: static membership, so a restarted pod gets its partitions back
    without a rebalance. (The flip side: a static member does not leave the group on shutdown, so after a
    scale-down its partitions wait ``session.timeout.ms`` before they move.)

Kubernetes also injects service-link variables for every Service in the namespace (``enableServiceLinks``
defaults to true): a Service called ``kafka`` yields ``KAFKA_PORT``, ``KAFKA_SERVICE_HOST``,
``KAFKA_PORT_9092_TCP_ADDR`` and so on. Those shapes are never librdkafka properties or sidecar settings,
so they are ignored rather than passed through (which would make librdkafka refuse to start).

``SIDECAR_TOPICS`` is split on commas, so a ``^regex`` subscription cannot contain one. Regexes are
checked with Python's ``re``; librdkafka matches with its own engine, so keep to plain syntax.

Values of secret properties (names containing password, passphrase, secret, token or credentials,
``sasl.jaas.config``, ``sasl.oauthbearer.config``, ``*.pem``) are shown as ``****`` by
:meth:`Config.describe`, :func:`render` and in error messages; ``Config.kafka`` keeps the real values.

This module is pure (stdlib only, no librdkafka or gRPC) so it is tested in microseconds.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, TypeVar

__all__ = ["Config", "ConfigError", "render"]

_T = TypeVar("_T")

# --- errors ------------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    """A bad or missing environment variable; ``str()`` is one line naming it.

    ``KAFKA_GROUP_ID is not set: expected the consumer group id``
    ``SIDECAR_COMMIT_INTERVAL_MS="abc": expected a whole number of milliseconds > 0``
    """

    variable: str
    expected: str

    def __init__(self, variable: str, expected: str, value: str | None = None, *, problem: str = "") -> None:
        self.variable = variable
        self.expected = expected
        head = f"{variable} is not set" if value is None else f"{variable}={_quote(variable, value)}"
        super().__init__(_escape(f"{head}: {problem or 'expected ' + expected}"))


def _all_missing(variables: list[str]) -> ConfigError:
    """Several required variables unset: one error naming them all, so one run tells everything."""
    if len(variables) == 1:
        return ConfigError(variables[0], _MISSING[variables[0]])
    err = ConfigError(variables[0], _MISSING[variables[0]])
    names = ", ".join(variables[:-1]) + " and " + variables[-1]
    err.args = (f"{names} are not set: expected " + "; ".join(_MISSING[v] for v in variables),)
    return err


class _Invalid(ValueError):
    """Raised by a parser; its message is the specific ``expected`` text."""


def _escape(text: str) -> str:
    """Escape what would break a line or a table (newlines, other control characters)."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def _quote(variable: str, value: str) -> str:
    """The value as a one-line JSON string, masked when secret, shortened when long."""
    if variable.startswith(_KAFKA) and is_secret(_property_name(variable)) and value.strip():
        return '"' + _MASK + '"'
    if len(value) > 120:
        value = value[:117] + "..."
    return json.dumps(value)


# --- the settings ------------------------------------------------------------------------------------------

_KAFKA = "KAFKA_"
_SIDECAR = "SIDECAR_"
_POD_NAME = "POD_NAME"
_DEFAULT = "default"
_MASK = "****"


class _Setting(NamedTuple):
    variable: str
    field: str
    default: str | None  # as text, parsed like a value from the environment; None = required
    meaning: str


_SETTINGS = (
    _Setting(
        "SIDECAR_TOPICS",
        "topics",
        None,
        "Topics to consume: comma-separated names and/or ^regex subscriptions.",
    ),
    _Setting(
        "SIDECAR_GRPC_ADDRESS",
        "grpc_address",
        "127.0.0.1:50051",
        "gRPC listen address for the app: host:port, [ipv6]:port or unix:///absolute/path.sock.",
    ),
    _Setting(
        "SIDECAR_HTTP_ADDRESS",
        "http_address",
        "127.0.0.1:8080",
        "HTTP listen address for /healthz, /readyz and /metrics (host:port), or off.",
    ),
    _Setting(
        "SIDECAR_BUFFER_MAX_RECORDS",
        "buffer_max_records",
        "50000",
        "Records held but not yet acked (buffered + in flight) before fetching pauses.",
    ),
    _Setting(
        "SIDECAR_BUFFER_MAX_BYTES",
        "buffer_max_bytes",
        "67108864",
        "Bytes held but not yet acked before fetching pauses; KiB/MiB/GiB suffixes accepted.",
    ),
    _Setting(
        "SIDECAR_MAX_BATCH_RECORDS",
        "max_batch_records",
        "1000",
        "Most records in one gRPC message (1-100000).",
    ),
    _Setting(
        "SIDECAR_MAX_BATCH_BYTES",
        "max_batch_bytes",
        "1048576",
        "Most record bytes in one gRPC message; KiB/MiB/GiB suffixes accepted.",
    ),
    _Setting(
        "SIDECAR_MAX_REQUEST_BYTES",
        "max_request_bytes",
        "4194304",
        "Largest app request (acks, nacks, credit) the sidecar reads; a larger one ends that stream.",
    ),
    _Setting(
        "SIDECAR_COMMIT_INTERVAL_MS", "commit_interval_ms", "1000", "How often acked offsets are committed."
    ),
    _Setting(
        "SIDECAR_REVOKE_GRACE_MS",
        "revoke_grace_ms",
        "10000",
        "On revocation, how long to wait for acks of in-flight records; < max.poll.interval.ms.",
    ),
    _Setting(
        "SIDECAR_DRAIN_TIMEOUT_MS",
        "drain_timeout_ms",
        "20000",
        "On shutdown, how long to wait for acks before the final commit.",
    ),
    _Setting(
        "SIDECAR_STALL_TIMEOUT_MS",
        "stall_timeout_ms",
        "120000",
        "Not healthy after this long with records waiting, app credit and nothing moving (0 = off).",
    ),
    _Setting(
        "SIDECAR_ORDERING",
        "ordering",
        "partition",
        "partition (one stream per partition at a time), key (one record per key in flight) or unordered.",
    ),
    _Setting(
        "SIDECAR_ACK_TIMEOUT_MS",
        "ack_timeout_ms",
        "60000",
        "Lease of a delivered record: unacked and not extended for this long, it is redelivered (0 = never).",
    ),
    _Setting(
        "SIDECAR_RETRY_BACKOFF_MS",
        "retry_backoff_ms",
        "1000",
        "Delay before a nacked record is redelivered; doubles with each attempt (0 = at once).",
    ),
    _Setting(
        "SIDECAR_RETRY_BACKOFF_MAX_MS",
        "retry_backoff_max_ms",
        "60000",
        "Cap of the growing retry backoff; >= SIDECAR_RETRY_BACKOFF_MS.",
    ),
    _Setting(
        "SIDECAR_MAX_DELIVERY_ATTEMPTS",
        "max_delivery_attempts",
        "5",
        "Deliveries of a record before it is dead-lettered (0 = unlimited).",
    ),
    _Setting(
        "SIDECAR_DLQ_TOPIC",
        "dlq_topic",
        "",
        "Dead-letter topic for rejected and exhausted records (unset = none: see SIDECAR_ON_EXHAUSTED).",
    ),
    _Setting(
        "SIDECAR_ON_EXHAUSTED",
        "on_exhausted",
        "block",
        "Without a dead-letter topic: block (park the record, hold its commit) or skip (ack it, warn).",
    ),
    _Setting(
        "SIDECAR_GAP_METADATA_MAX_BYTES",
        "gap_metadata_max_bytes",
        "4000",
        "Commit-metadata room for acked offsets above the commit (0 = off); when full, fetching pauses.",
    ),
    _Setting(
        "SIDECAR_READINESS",
        "readiness",
        "app",
        "When /readyz says ready: app (joined and an app stream connected) or joined (joined only).",
    ),
    _Setting("SIDECAR_LOG_LEVEL", "log_level", "INFO", "DEBUG, INFO, WARNING or ERROR (any case)."),
    _Setting("SIDECAR_LOG_FORMAT", "log_format", "text", "text or json."),
)
_BY_VARIABLE = {s.variable: s for s in _SETTINGS}
_BY_FIELD = {s.field: s for s in _SETTINGS}

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

_SECRET_WORDS = ("password", "passphrase", "secret", "token", "credentials")
_SECRET_PROPERTIES = frozenset({"sasl.jaas.config", "sasl.oauthbearer.config"})

_WHOLE = re.compile(r"[0-9]+")
_SIZE = re.compile(r"([0-9]+)\s*(|KiB|MiB|GiB|Ki|Mi|Gi)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # topics, group.instance.id
_PROPERTY = re.compile(r"[a-z0-9]+(?:[._][a-z0-9]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")  # a DNS name or an IPv4 address
# Kubernetes service links: <SVC>_SERVICE_HOST, <SVC>_SERVICE_PORT[_<NAME>], <SVC>_PORT[_<N>_<PROTO>[_...]].
_SERVICE_LINK = re.compile(
    r"[A-Z0-9_]+_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_[0-9]+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)"
)
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
_LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "WARN": "WARNING", "ERROR": "ERROR"}


# --- naming ------------------------------------------------------------------------------------------------


def _property_name(variable: str) -> str:
    """``KAFKA_SSL__KEY_X`` -> ``ssl_key.x``: drop the prefix, lower-case, ``__`` -> ``_``, ``_`` -> ``.``."""
    rest = variable[len(_KAFKA) :].lower()
    return "_".join(part.replace("_", ".") for part in rest.split("__"))


def _variable_name(kafka_property: str) -> str:
    """The inverse of :func:`_property_name`: ``ssl_key.x`` -> ``KAFKA_SSL__KEY_X``."""
    return _KAFKA + kafka_property.upper().replace("_", "__").replace(".", "_")


def is_secret(kafka_property: str) -> bool:
    name = kafka_property.lower()
    return name in _SECRET_PROPERTIES or name.endswith(".pem") or any(word in name for word in _SECRET_WORDS)


def _is_service_link(variable: str) -> bool:
    return _SERVICE_LINK.fullmatch(variable) is not None


# --- value parsers (raise _Invalid with the specific expectation) ------------------------------------------


def _whole(text: str, expected: str, low: int, high: int | None = None) -> int:
    if not _WHOLE.fullmatch(text):
        raise _Invalid(expected)
    number = int(text)
    if number < low or (high is not None and number > high):
        raise _Invalid(expected)
    return number


def _parse_size(text: str, expected: str) -> int:
    match = _SIZE.fullmatch(text)
    if not match:
        raise _Invalid(expected)
    number = int(match[1]) * _UNITS[match[2][:1].lower()]
    if number <= 0:
        raise _Invalid(expected)
    return number


def _check_kafka_name(name: str, what: str) -> None:
    if not _KAFKA_NAME.fullmatch(name) or name in (".", ".."):
        rule = '[A-Za-z0-9._-], 1 to 249 characters, not "." or ".."'
        raise _Invalid(f"{what} made of {rule}; {json.dumps(name)} is not")


def _parse_topics(text: str) -> tuple[str, ...]:
    topics: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise _Invalid("comma-separated topics without empty entries")
        if item in topics:
            raise _Invalid(f"each topic once; {json.dumps(item)} is listed twice")
        if item.startswith("^"):
            try:
                re.compile(item)
            except re.error as exc:
                expected = f"^regex subscriptions that compile; {json.dumps(item)} does not: {exc}"
                raise _Invalid(expected) from None
        else:
            _check_kafka_name(item, "topic names (or ^regexes)")
        topics.append(item)
    return tuple(topics)


def _split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host without brackets, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise _Invalid("[ipv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _Invalid(f"a valid IPv6 address inside [ ]; {json.dumps(host)} is not") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise _Invalid("host:port")
        if ":" in host:
            raise _Invalid("an IPv6 address in brackets: [ipv6]:port")
        if not _HOST.fullmatch(host):
            raise _Invalid(f"a hostname or IP address before the port; {json.dumps(host)} is not")
    return host, _whole(port, "a port from 0 to 65535", 0, 65535)


def _parse_grpc_address(text: str) -> str:
    if not text.startswith("unix:"):
        _split_host_port(text)
        return text
    path = text[len("unix:") :]
    if path.startswith("//"):
        path = path[2:]
    if not path.startswith("/") or "\0" in path:
        raise _Invalid("an absolute socket path: unix:///path/to/socket")
    if len(path.encode()) > _UNIX_PATH_MAX:
        raise _Invalid(f"a socket path of at most {_UNIX_PATH_MAX} bytes")
    return "unix://" + path


def _parse_http_address(text: str) -> tuple[str, int] | None:
    if text.lower() == "off":
        return None
    return _split_host_port(text)


def _parse_log_level(text: str) -> str:
    try:
        return _LOG_LEVELS[text.upper()]
    except KeyError:
        raise _Invalid("DEBUG, INFO, WARNING or ERROR") from None


def _parse_log_format(text: str) -> str:
    if text.lower() not in ("text", "json"):
        raise _Invalid("text or json")
    return text.lower()


def _choice(*choices: str) -> Callable[[str], str]:
    expected = ", ".join(choices[:-1]) + " or " + choices[-1]

    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise _Invalid(expected)
        return text.lower()

    return parse


def _optional_topic(text: str) -> str | None:
    if not text:
        return None
    _check_kafka_name(text, "a topic name")
    return text


def _attempts(text: str) -> int:
    return _whole(text, "a whole number of deliveries >= 0 (0 = unlimited)", 0)


def _metadata_bytes(text: str) -> int:
    return _whole(text, "a whole number of bytes from 0 (off) to 1000000", 0, 1_000_000)


def _ms(low: int) -> Callable[[str], int]:
    expected = f"a whole number of milliseconds {'> 0' if low else '>= 0'}"
    return lambda text: _whole(text, expected, low)


def _count(high: int | None = None) -> Callable[[str], int]:
    expected = "a whole number of records " + (f"from 1 to {high}" if high else "> 0")
    return lambda text: _whole(text, expected, 1, high)


def _size(text: str) -> int:
    expected = "a whole number of bytes > 0, optionally with a KiB, MiB or GiB suffix (e.g. 64MiB)"
    return _parse_size(text, expected)


# --- reading the environment -------------------------------------------------------------------------------

_MISSING = {
    "SIDECAR_TOPICS": "the topics to consume (comma-separated names or ^regexes)",
    "KAFKA_BOOTSTRAP_SERVERS": "the Kafka brokers to bootstrap from (host:port[,host:port...])",
    "KAFKA_GROUP_ID": "the consumer group id",
}


class _Env:
    """Reads variables, records where each value came from."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.sources: dict[str, str] = {}

    def setting(self, field: str, parse: Callable[[str], _T]) -> _T:
        spec = _BY_FIELD[field]
        raw = self.environ.get(spec.variable)
        if raw is None:
            if spec.default is None:
                raise ConfigError(spec.variable, _MISSING[spec.variable])
            raw, self.sources[field] = spec.default, _DEFAULT
        else:
            self.sources[field] = spec.variable
        try:
            if not raw.strip() and spec.default == "":  # optional: empty means unset
                return parse("")
            if not raw.strip():
                default = f"a value (unset {spec.variable} for the default)"
                raise _Invalid(_MISSING.get(spec.variable, default))
            return parse(raw.strip())
        except _Invalid as exc:
            raise ConfigError(spec.variable, str(exc), raw) from None


def _check_no_unknown_sidecar_variables(environ: Mapping[str, str]) -> None:
    for variable in sorted(environ):
        if variable.startswith(_SIDECAR) and variable not in _BY_VARIABLE and not _is_service_link(variable):
            close = difflib.get_close_matches(variable, _BY_VARIABLE, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(_BY_VARIABLE)
            raise ConfigError(
                variable,
                "a known SIDECAR_ variable",
                environ[variable],
                problem=f"unknown variable{hint}; known: {known}",
            )


def _read_kafka_variables(environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """All ``KAFKA_*`` variables as librdkafka properties, and the variable each came from."""
    properties: dict[str, str] = {}
    sources: dict[str, str] = {}
    for variable in sorted(environ):
        if not variable.startswith(_KAFKA) or _is_service_link(variable):
            continue
        name, value = _property_name(variable), environ[variable]
        if not _PROPERTY.fullmatch(name):
            raise ConfigError(
                variable,
                "a librdkafka property: KAFKA_ + the property in upper case, with . written as _ and _ as __",
                value,
            )
        if name == "topic" or name in _BY_FIELD:
            setting = _BY_FIELD.get(name, _BY_FIELD["topics"]).variable
            raise ConfigError(variable, f"no such librdkafka property; this is set with {setting}", value)
        if name in sources:
            expected = f"one variable per property; {sources[name]} already sets {name}"
            raise ConfigError(variable, expected, value)
        if not value.strip():
            raise ConfigError(variable, f"a value (unset {variable} for librdkafka's default)", value)
        properties[name], sources[name] = value, variable
    return properties, sources


class _Kafka:
    """The librdkafka properties being assembled, with their sources."""

    def __init__(self, properties: dict[str, str], sources: dict[str, str]) -> None:
        self.properties = properties
        self.sources = sources

    def explicit(self, name: str) -> bool:
        return self.sources.get(name, _DEFAULT) != _DEFAULT

    def fail(self, name: str, expected: str) -> ConfigError:
        return ConfigError(self.sources[name], expected, self.properties[name])

    def normalize(self, name: str, parse: Callable[[str], str]) -> None:
        if name in self.properties:
            try:
                self.properties[name] = parse(self.properties[name].strip())
            except _Invalid as exc:
                raise self.fail(name, str(exc)) from None

    def set_default(self, name: str, value: str) -> None:
        if name not in self.properties:
            self.properties[name], self.sources[name] = value, _DEFAULT

    def number(self, name: str, high: int) -> int | None:
        if name not in self.properties:
            return None
        expected = f"a whole number of milliseconds from 1 to {high}"
        try:
            value = _whole(self.properties[name].strip(), expected, 1, high)
        except _Invalid as exc:
            raise self.fail(name, str(exc)) from None
        self.properties[name] = str(value)
        return value


def _only_false(text: str) -> str:
    if text.lower() not in ("false", "f", "0"):
        raise _Invalid("false: the sidecar stores and commits only offsets the app acked")
    return "false"


def _group_protocol(text: str) -> str:
    if text.lower() not in ("classic", "consumer"):
        raise _Invalid("classic or consumer")
    return text.lower()


def _apply_kafka_rules(kafka: _Kafka, environ: Mapping[str, str]) -> None:
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


def _apply_static_membership(kafka: _Kafka, environ: Mapping[str, str]) -> None:
    pod_name = environ.get(_POD_NAME, "").strip()
    if "group.instance.id" not in kafka.properties and pod_name:
        kafka.properties["group.instance.id"], kafka.sources["group.instance.id"] = pod_name, _POD_NAME
    instance_id = kafka.properties.get("group.instance.id")
    if instance_id is None:
        kafka.set_default("client.id", _CLIENT_ID)
        return
    try:
        _check_kafka_name(instance_id, "a group.instance.id")
    except _Invalid as exc:
        raise kafka.fail("group.instance.id", str(exc)) from None
    kafka.set_default("client.id", f"{_CLIENT_ID}-{instance_id}")


def _check_group_timeouts(kafka: _Kafka) -> None:
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


def _check_revoke_grace(revoke_grace_ms: int, kafka: _Kafka) -> None:
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


# --- the config --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The validated configuration. Build it with :meth:`from_env`."""

    topics: tuple[str, ...]
    grpc_address: str  # a gRPC target: "unix:///abs/path.sock" or "host:port"
    http_address: tuple[str, int] | None  # None when disabled
    buffer_max_records: int
    buffer_max_bytes: int
    max_batch_records: int
    max_batch_bytes: int
    max_request_bytes: int
    commit_interval_ms: int
    revoke_grace_ms: int
    drain_timeout_ms: int
    stall_timeout_ms: int  # 0 = progress not watched
    ordering: str  # "partition" | "key" | "unordered"
    ack_timeout_ms: int  # 0 = no lease
    retry_backoff_ms: int
    retry_backoff_max_ms: int
    max_delivery_attempts: int  # 0 = unlimited
    dlq_topic: str | None
    on_exhausted: str  # "block" | "skip"
    gap_metadata_max_bytes: int  # 0 = off
    log_level: str  # "DEBUG" | "INFO" | "WARNING" | "ERROR"
    readiness: str  # "app" | "joined": what /readyz requires
    log_format: str  # "text" | "json"
    kafka: Mapping[str, str]  # effective librdkafka properties (defaults applied), dotted names
    sources: Mapping[str, str]  # field or property -> the variable it came from, or "default"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """Parse and validate; raises :class:`ConfigError` for the first problem found."""
        _check_no_unknown_sidecar_variables(environ)
        kafka = _Kafka(*_read_kafka_variables(environ))
        missing = [
            variable
            for variable, unset in (
                ("KAFKA_BOOTSTRAP_SERVERS", "bootstrap.servers" not in kafka.properties),
                ("KAFKA_GROUP_ID", "group.id" not in kafka.properties),
                ("SIDECAR_TOPICS", environ.get("SIDECAR_TOPICS") is None),
            )
            if unset
        ]
        if missing:
            raise _all_missing(missing)
        env = _Env(environ)
        topics = env.setting("topics", _parse_topics)
        grpc_address = env.setting("grpc_address", _parse_grpc_address)
        http_address = env.setting("http_address", _parse_http_address)
        buffer_max_records = env.setting("buffer_max_records", _count())
        buffer_max_bytes = env.setting("buffer_max_bytes", _size)
        max_batch_records = env.setting("max_batch_records", _count(100000))
        max_batch_bytes = env.setting("max_batch_bytes", _size)
        max_request_bytes = env.setting("max_request_bytes", _size)
        commit_interval_ms = env.setting("commit_interval_ms", _ms(1))
        revoke_grace_ms = env.setting("revoke_grace_ms", _ms(0))
        drain_timeout_ms = env.setting("drain_timeout_ms", _ms(0))
        stall_timeout_ms = env.setting("stall_timeout_ms", _ms(0))
        ordering = env.setting("ordering", _choice("partition", "key", "unordered"))
        ack_timeout_ms = env.setting("ack_timeout_ms", _ms(0))
        retry_backoff_ms = env.setting("retry_backoff_ms", _ms(0))
        retry_backoff_max_ms = env.setting("retry_backoff_max_ms", _ms(0))
        if retry_backoff_max_ms < retry_backoff_ms:
            expected = f"milliseconds >= SIDECAR_RETRY_BACKOFF_MS ({retry_backoff_ms})"
            raise ConfigError("SIDECAR_RETRY_BACKOFF_MAX_MS", expected, str(retry_backoff_max_ms))
        max_delivery_attempts = env.setting("max_delivery_attempts", _attempts)
        dlq_topic = env.setting("dlq_topic", _optional_topic)
        on_exhausted = env.setting("on_exhausted", _choice("block", "skip"))
        gap_metadata_max_bytes = env.setting("gap_metadata_max_bytes", _metadata_bytes)
        log_level = env.setting("log_level", _parse_log_level)
        readiness = env.setting("readiness", _choice("app", "joined"))
        log_format = env.setting("log_format", _parse_log_format)
        _apply_kafka_rules(kafka, environ)
        _check_revoke_grace(revoke_grace_ms, kafka)
        return cls(
            topics=topics,
            grpc_address=grpc_address,
            http_address=http_address,
            buffer_max_records=buffer_max_records,
            buffer_max_bytes=buffer_max_bytes,
            max_batch_records=max_batch_records,
            max_batch_bytes=max_batch_bytes,
            max_request_bytes=max_request_bytes,
            commit_interval_ms=commit_interval_ms,
            revoke_grace_ms=revoke_grace_ms,
            drain_timeout_ms=drain_timeout_ms,
            stall_timeout_ms=stall_timeout_ms,
            ordering=ordering,
            ack_timeout_ms=ack_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
            retry_backoff_max_ms=retry_backoff_max_ms,
            max_delivery_attempts=max_delivery_attempts,
            dlq_topic=dlq_topic,
            on_exhausted=on_exhausted,
            gap_metadata_max_bytes=gap_metadata_max_bytes,
            log_level=log_level,
            readiness=readiness,
            log_format=log_format,
            kafka=MappingProxyType(dict(sorted(kafka.properties.items()))),
            sources=MappingProxyType(env.sources | kafka.sources),
        )

    @property
    def static_member(self) -> bool:
        """True when the member uses static membership (``group.instance.id`` is set)."""
        return "group.instance.id" in self.kafka

    def env_name(self, kafka_property: str) -> str:
        """The variable to blame for a librdkafka property, e.g. when librdkafka rejects it."""
        source = self.sources.get(kafka_property, _DEFAULT)
        return _variable_name(kafka_property) if source == _DEFAULT else source

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value with secrets masked, source): sidecar settings, then librdkafka properties."""
        return self._setting_rows() + self._kafka_rows()

    def _setting_rows(self) -> list[tuple[str, str, str]]:
        return [(s.variable, self._setting_text(s.field), self.sources[s.field]) for s in _SETTINGS]

    def _kafka_rows(self) -> list[tuple[str, str, str]]:
        return [
            (name, _MASK if is_secret(name) else value, self.sources.get(name, _DEFAULT))
            for name, value in sorted(self.kafka.items())
        ]

    def _setting_text(self, field: str) -> str:
        value: object = getattr(self, field)
        if field == "topics":
            return ",".join(self.topics)
        if field == "dlq_topic":
            return self.dlq_topic or "(none)"
        if field == "http_address":
            if self.http_address is None:
                return "off"
            host, port = self.http_address
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return str(value)


# --- rendering ---------------------------------------------------------------------------------------------


def _table(title: str, rows: Iterable[tuple[str, str, str]], widths: tuple[int, int]) -> list[str]:
    lines = [title]
    for name, value, source in [("NAME", "VALUE", "SOURCE"), *rows]:
        lines.append(f"  {name:<{widths[0]}}  {_escape(value):<{widths[1]}}  {source}".rstrip())
    return lines


def render(config: Config) -> str:
    """The text ``kafka-sidecar config`` prints: two aligned tables with sources, secrets masked."""
    settings, properties = config._setting_rows(), config._kafka_rows()
    rows = settings + properties
    name_width = max(len(name) for name, _, _ in rows)
    value_width = min(48, max(len(_escape(value)) for _, value, _ in rows))
    widths = (name_width, value_width)
    lines = _table("Sidecar settings", settings, widths)
    lines += ["", *_table("librdkafka properties", properties, widths)]
    if config.static_member:
        lines += [
            "",
            f"Static membership: group.instance.id={config.kafka['group.instance.id']} "
            f"(from {config.sources['group.instance.id']})",
        ]
    return "\n".join(lines) + "\n"
