"""The ``SIDECAR_*`` settings: the table of every variable (name, field, default, meaning), and
reading them from the environment, where an unknown ``SIDECAR_*`` variable is an error."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

from sidecar.config.errors import ConfigError, Invalid
from sidecar.config.naming import DEFAULT, SIDECAR_PREFIX, is_service_link

_T = TypeVar("_T")


class Setting(NamedTuple):
    variable: str
    field: str
    default: str | None  # as text, parsed like a value from the environment; None = required
    meaning: str


SETTINGS = (
    Setting(
        "SIDECAR_TOPICS",
        "topics",
        None,
        "Topics to consume: comma-separated names and/or ^regex subscriptions.",
    ),
    Setting(
        "SIDECAR_GRPC_ADDRESS",
        "grpc_address",
        "127.0.0.1:50051",
        "gRPC listen address for the app: host:port, [ipv6]:port or unix:///absolute/path.sock.",
    ),
    Setting(
        "SIDECAR_HTTP_ADDRESS",
        "http_address",
        "127.0.0.1:8080",
        "HTTP listen address for /healthz, /readyz and /metrics (host:port), or off.",
    ),
    Setting(
        "SIDECAR_GROUP_TYPE",
        "group_type",
        "consumer",
        "consumer (a consumer group: partitions assigned, offsets committed) or share (a share group, "
        "KIP-932: records shared out one by one, the broker keeps their state).",
    ),
    Setting(
        "SIDECAR_BUFFER_MAX_RECORDS",
        "buffer_max_records",
        "50000",
        "Records held but not yet acked (buffered + in flight) before fetching pauses.",
    ),
    Setting(
        "SIDECAR_BUFFER_MAX_BYTES",
        "buffer_max_bytes",
        "67108864",
        "Bytes held but not yet acked before fetching pauses; KiB/MiB/GiB suffixes accepted.",
    ),
    Setting(
        "SIDECAR_MAX_BATCH_RECORDS",
        "max_batch_records",
        "1000",
        "Most records in one gRPC message (1-100000).",
    ),
    Setting(
        "SIDECAR_MAX_BATCH_BYTES",
        "max_batch_bytes",
        "1048576",
        "Most record bytes in one gRPC message; KiB/MiB/GiB suffixes accepted.",
    ),
    Setting(
        "SIDECAR_MAX_REQUEST_BYTES",
        "max_request_bytes",
        "4194304",
        "Largest app request (acks, nacks, credit) the sidecar reads; a larger one ends that stream.",
    ),
    Setting(
        "SIDECAR_MAX_STREAMS",
        "max_streams",
        "1024",
        "Most app streams open at once; one more is refused with RESOURCE_EXHAUSTED.",
    ),
    Setting(
        "SIDECAR_GRPC_SOCKET_MODE",
        "grpc_socket_mode",
        "0660",
        "Permissions of the unix socket (octal): who may connect. 0660: the owner and its group.",
    ),
    Setting(
        "SIDECAR_TLS_CERT_FILE",
        "tls_cert_file",
        "",
        "PEM certificate chain the gRPC port serves TLS with (with SIDECAR_TLS_KEY_FILE); re-read on change.",
    ),
    Setting("SIDECAR_TLS_KEY_FILE", "tls_key_file", "", "PEM private key of SIDECAR_TLS_CERT_FILE."),
    Setting(
        "SIDECAR_TLS_CLIENT_CA_FILE",
        "tls_client_ca_file",
        "",
        "PEM CA bundle; apps must present a certificate it signed (mutual TLS).",
    ),
    Setting(
        "SIDECAR_GRPC_TOKEN_FILE",
        "grpc_token_file",
        "",
        "File with the bearer token apps must send (metadata authorization: Bearer ...); re-read on change.",
    ),
    Setting(
        "SIDECAR_SHARE_CONSUMERS",
        "share_consumers",
        "4",
        "Share groups: share consumers, each polling on its own thread (1-64); a slow record holds one.",
    ),
    Setting(
        "SIDECAR_COMMIT_INTERVAL_MS", "commit_interval_ms", "1000", "How often acked offsets are committed."
    ),
    Setting(
        "SIDECAR_REVOKE_GRACE_MS",
        "revoke_grace_ms",
        "10000",
        "On revocation, how long to wait for acks of in-flight records; < max.poll.interval.ms.",
    ),
    Setting(
        "SIDECAR_DRAIN_TIMEOUT_MS",
        "drain_timeout_ms",
        "20000",
        "On shutdown, how long to wait for acks before the final commit.",
    ),
    Setting(
        "SIDECAR_STALL_TIMEOUT_MS",
        "stall_timeout_ms",
        "120000",
        "Not healthy after this long with records waiting, app credit and nothing moving (0 = off).",
    ),
    Setting(
        "SIDECAR_ORDERING",
        "ordering",
        "partition",
        "partition (one stream per partition at a time), key (one record per key in flight) or unordered.",
    ),
    Setting(
        "SIDECAR_ACK_TIMEOUT_MS",
        "ack_timeout_ms",
        "60000",
        "Lease of a delivered record: unacked and not extended for this long, it is redelivered (0 = never).",
    ),
    Setting(
        "SIDECAR_RETRY_BACKOFF_MS",
        "retry_backoff_ms",
        "1000",
        "Delay before a nacked record is redelivered; doubles with each attempt (0 = at once).",
    ),
    Setting(
        "SIDECAR_RETRY_BACKOFF_MAX_MS",
        "retry_backoff_max_ms",
        "60000",
        "Cap of the growing retry backoff; >= SIDECAR_RETRY_BACKOFF_MS.",
    ),
    Setting(
        "SIDECAR_MAX_DELIVERY_ATTEMPTS",
        "max_delivery_attempts",
        "5",
        "Deliveries of a record before it is dead-lettered (0 = unlimited).",
    ),
    Setting(
        "SIDECAR_DLQ_TOPIC",
        "dlq_topic",
        "",
        "Dead-letter topic for rejected and exhausted records (unset = none: see SIDECAR_ON_EXHAUSTED).",
    ),
    Setting(
        "SIDECAR_ON_EXHAUSTED",
        "on_exhausted",
        "block",
        "Without a dead-letter topic: block (park the record, hold its commit) or skip (ack it, warn).",
    ),
    Setting(
        "SIDECAR_GAP_METADATA_MAX_BYTES",
        "gap_metadata_max_bytes",
        "4000",
        "Commit-metadata room for acked offsets above the commit (0 = off); when full, fetching pauses.",
    ),
    Setting(
        "SIDECAR_READINESS",
        "readiness",
        "app",
        "When /readyz says ready: app (joined and an app stream connected) or joined (joined only).",
    ),
    Setting("SIDECAR_LOG_LEVEL", "log_level", "INFO", "DEBUG, INFO, WARNING or ERROR (any case)."),
    Setting("SIDECAR_LOG_FORMAT", "log_format", "text", "text or json."),
)
BY_VARIABLE = {s.variable: s for s in SETTINGS}
BY_FIELD = {s.field: s for s in SETTINGS}

REQUIRED = {
    "SIDECAR_TOPICS": "the topics to consume (comma-separated names or ^regexes)",
    "KAFKA_BOOTSTRAP_SERVERS": "the Kafka brokers to bootstrap from (host:port[,host:port...])",
    "KAFKA_GROUP_ID": "the consumer group id",
}


def all_missing(variables: list[str]) -> ConfigError:
    """Several required variables unset: one error naming them all, so one run tells everything."""
    if len(variables) == 1:
        return ConfigError(variables[0], REQUIRED[variables[0]])
    err = ConfigError(variables[0], REQUIRED[variables[0]])
    names = ", ".join(variables[:-1]) + " and " + variables[-1]
    err.args = (f"{names} are not set: expected " + "; ".join(REQUIRED[v] for v in variables),)
    return err


class EnvReader:
    """Reads variables, records where each value came from."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.sources: dict[str, str] = {}

    def setting(self, field: str, parse: Callable[[str], _T]) -> _T:
        spec = BY_FIELD[field]
        raw = self.environ.get(spec.variable)
        if raw is None:
            if spec.default is None:
                raise ConfigError(spec.variable, REQUIRED[spec.variable])
            raw, self.sources[field] = spec.default, DEFAULT
        else:
            self.sources[field] = spec.variable
        try:
            if not raw.strip() and spec.default == "":  # optional: empty means unset
                return parse("")
            if not raw.strip():
                default = f"a value (unset {spec.variable} for the default)"
                raise Invalid(REQUIRED.get(spec.variable, default))
            return parse(raw.strip())
        except Invalid as exc:
            raise ConfigError(spec.variable, str(exc), raw) from None


def check_no_unknown_sidecar_variables(environ: Mapping[str, str]) -> None:
    for variable in sorted(environ):
        if (
            variable.startswith(SIDECAR_PREFIX)
            and variable not in BY_VARIABLE
            and not is_service_link(variable)
        ):
            close = difflib.get_close_matches(variable, BY_VARIABLE, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            known = ", ".join(BY_VARIABLE)
            raise ConfigError(
                variable,
                "a known SIDECAR_ variable",
                environ[variable],
                problem=f"unknown variable{hint}; known: {known}",
            )
