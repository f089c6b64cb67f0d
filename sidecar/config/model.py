"""The validated configuration (:class:`Config`) and the table ``kafka-sidecar config`` prints."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sidecar.config.errors import ConfigError, escape
from sidecar.config.kafka import KafkaProperties, apply_kafka_rules, check_revoke_grace, read_kafka_variables
from sidecar.config.naming import DEFAULT, MASK, is_secret, variable_name
from sidecar.config.settings import SETTINGS, EnvReader, all_missing, check_no_unknown_sidecar_variables
from sidecar.config.share import apply_share_rules, check_share_exhausted, share_ordering
from sidecar.config.values import (
    attempts,
    byte_size,
    choice,
    file_mode,
    metadata_bytes,
    millis,
    optional_file,
    optional_topic,
    parse_grpc_address,
    parse_http_address,
    parse_log_format,
    parse_log_level,
    parse_topics,
    record_count,
    token_file,
)


@dataclass(frozen=True)
class Config:
    """The validated configuration. Build it with :meth:`from_env`."""

    group_type: str  # "consumer" | "share"
    topics: tuple[str, ...]
    grpc_address: str  # a gRPC target: "unix:///abs/path.sock" or "host:port"
    http_address: tuple[str, int] | None  # None when disabled
    buffer_max_records: int
    buffer_max_bytes: int
    max_batch_records: int
    max_batch_bytes: int
    max_request_bytes: int
    max_streams: int
    share_consumers: int
    grpc_socket_mode: int  # permissions of a unix socket
    tls_cert_file: str | None  # TLS on the gRPC port when set (with tls_key_file)
    tls_key_file: str | None
    tls_client_ca_file: str | None  # mutual TLS when set
    grpc_token_file: str | None  # bearer-token authentication when set
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
        check_no_unknown_sidecar_variables(environ)
        kafka = KafkaProperties(*read_kafka_variables(environ))
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
            raise all_missing(missing)
        env = EnvReader(environ)
        group_type = env.setting("group_type", choice("consumer", "share"))
        topics = env.setting("topics", parse_topics)
        grpc_address = env.setting("grpc_address", parse_grpc_address)
        http_address = env.setting("http_address", parse_http_address)
        buffer_max_records = env.setting("buffer_max_records", record_count())
        buffer_max_bytes = env.setting("buffer_max_bytes", byte_size)
        max_batch_records = env.setting("max_batch_records", record_count(100000))
        max_batch_bytes = env.setting("max_batch_bytes", byte_size)
        max_request_bytes = env.setting("max_request_bytes", byte_size)
        max_streams = env.setting("max_streams", record_count(1_000_000))
        share_consumers = env.setting("share_consumers", record_count(64))
        grpc_socket_mode = env.setting("grpc_socket_mode", file_mode)
        tls_cert_file = env.setting("tls_cert_file", optional_file)
        tls_key_file = env.setting("tls_key_file", optional_file)
        tls_client_ca_file = env.setting("tls_client_ca_file", optional_file)
        _check_tls(tls_cert_file, tls_key_file, tls_client_ca_file)
        grpc_token_file = env.setting("grpc_token_file", token_file)
        commit_interval_ms = env.setting("commit_interval_ms", millis(1))
        revoke_grace_ms = env.setting("revoke_grace_ms", millis(0))
        drain_timeout_ms = env.setting("drain_timeout_ms", millis(0))
        stall_timeout_ms = env.setting("stall_timeout_ms", millis(0))
        ordering = env.setting("ordering", choice("partition", "key", "unordered"))
        ack_timeout_ms = env.setting("ack_timeout_ms", millis(0))
        retry_backoff_ms = env.setting("retry_backoff_ms", millis(0))
        retry_backoff_max_ms = env.setting("retry_backoff_max_ms", millis(0))
        if retry_backoff_max_ms < retry_backoff_ms:
            expected = f"milliseconds >= SIDECAR_RETRY_BACKOFF_MS ({retry_backoff_ms})"
            raise ConfigError("SIDECAR_RETRY_BACKOFF_MAX_MS", expected, str(retry_backoff_max_ms))
        max_delivery_attempts = env.setting("max_delivery_attempts", attempts)
        dlq_topic = env.setting("dlq_topic", optional_topic)
        on_exhausted = env.setting("on_exhausted", choice("block", "skip"))
        gap_metadata_max_bytes = env.setting("gap_metadata_max_bytes", metadata_bytes)
        log_level = env.setting("log_level", parse_log_level)
        readiness = env.setting("readiness", choice("app", "joined"))
        log_format = env.setting("log_format", parse_log_format)
        if group_type == "share":
            ordering = share_ordering(ordering, env.sources["ordering"])
            check_share_exhausted(on_exhausted, env.sources["on_exhausted"])
            apply_share_rules(kafka)
        else:
            apply_kafka_rules(kafka, environ)
            check_revoke_grace(revoke_grace_ms, kafka)
        return cls(
            group_type=group_type,
            topics=topics,
            grpc_address=grpc_address,
            http_address=http_address,
            buffer_max_records=buffer_max_records,
            buffer_max_bytes=buffer_max_bytes,
            max_batch_records=max_batch_records,
            max_batch_bytes=max_batch_bytes,
            max_request_bytes=max_request_bytes,
            max_streams=max_streams,
            share_consumers=share_consumers,
            grpc_socket_mode=grpc_socket_mode,
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            tls_client_ca_file=tls_client_ca_file,
            grpc_token_file=grpc_token_file,
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

    @property
    def share(self) -> bool:
        """True when the sidecar is a member of a share group (SIDECAR_GROUP_TYPE=share)."""
        return self.group_type == "share"

    def env_name(self, kafka_property: str) -> str:
        """The variable to blame for a librdkafka property, e.g. when librdkafka rejects it."""
        source = self.sources.get(kafka_property, DEFAULT)
        return variable_name(kafka_property) if source == DEFAULT else source

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value with secrets masked, source): sidecar settings, then librdkafka properties."""
        return self._setting_rows() + self._kafka_rows()

    def _setting_rows(self) -> list[tuple[str, str, str]]:
        return [(s.variable, self._setting_text(s.field), self.sources[s.field]) for s in SETTINGS]

    def _kafka_rows(self) -> list[tuple[str, str, str]]:
        return [
            (name, MASK if is_secret(name) else value, self.sources.get(name, DEFAULT))
            for name, value in sorted(self.kafka.items())
        ]

    def _setting_text(self, field: str) -> str:
        value: object = getattr(self, field)
        if field == "topics":
            return ",".join(self.topics)
        if field == "grpc_socket_mode":
            return f"0{self.grpc_socket_mode:03o}"
        if field == "http_address":
            if self.http_address is None:
                return "off"
            host, port = self.http_address
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if value is None:  # an optional setting not given (a dead-letter topic, a file)
            return "(none)"
        return str(value)


def _check_tls(cert: str | None, key: str | None, client_ca: str | None) -> None:
    """A certificate needs its key and the other way round; mutual TLS needs TLS."""
    if cert and not key:
        raise ConfigError("SIDECAR_TLS_KEY_FILE", "the private key of SIDECAR_TLS_CERT_FILE (PEM)")
    if key and not cert:
        raise ConfigError("SIDECAR_TLS_CERT_FILE", "the certificate chain of SIDECAR_TLS_KEY_FILE (PEM)")
    if client_ca and not cert:
        raise ConfigError(
            "SIDECAR_TLS_CLIENT_CA_FILE",
            "mutual TLS needs TLS: set SIDECAR_TLS_CERT_FILE and SIDECAR_TLS_KEY_FILE too",
            client_ca,
        )


def _table(title: str, rows: Iterable[tuple[str, str, str]], widths: tuple[int, int]) -> list[str]:
    lines = [title]
    for name, value, source in [("NAME", "VALUE", "SOURCE"), *rows]:
        lines.append(f"  {name:<{widths[0]}}  {escape(value):<{widths[1]}}  {source}".rstrip())
    return lines


def render(config: Config) -> str:
    """The text ``kafka-sidecar config`` prints: two aligned tables with sources, secrets masked."""
    settings, properties = config._setting_rows(), config._kafka_rows()
    rows = settings + properties
    name_width = max(len(name) for name, _, _ in rows)
    value_width = min(48, max(len(escape(value)) for _, value, _ in rows))
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
