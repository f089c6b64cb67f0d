"""The ``kafka-sidecar`` command: ``run`` (the default), ``config``, ``demo``."""

from __future__ import annotations

import argparse
import os
import re
import sys

from sidecar import __version__
from sidecar.config import Config, ConfigError, is_secret, render

EXIT_CONFIG = 2


def _load_config() -> Config:
    """The configuration, or exit 2 with one line naming the variable at fault (before any connection)."""
    try:
        config = Config.from_env(os.environ)
        _check_with_librdkafka(config)
    except ConfigError as exc:
        print(f"kafka-sidecar: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return config


def _check_with_librdkafka(config: Config) -> None:
    """librdkafka judges KAFKA_* names and values; its complaint is mapped back to the variable."""
    from confluent_kafka import KafkaException

    from sidecar.consumer.member import check_kafka_config
    from sidecar.share.group_config import check_share_kafka_config

    try:
        if config.share:
            check_share_kafka_config(dict(config.kafka))
        else:
            check_kafka_config(config.kafka)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        message = error.str() if hasattr(error, "str") else str(error)
        named = [p for p in re.findall(r'["`]([^"`]+)["`]', message) if p in config.kafka]
        if not named:
            raise ConfigError("KAFKA_*", message, "", problem=message) from None
        prop = named[0]
        if is_secret(prop):
            message = message.replace(config.kafka[prop], "****")
        raise ConfigError(
            config.env_name(prop), "a value librdkafka accepts", config.kafka[prop], problem=message
        ) from None


#: What ``--help`` says of the configuration: the required variables, and where the rest are.
CONFIGURATION = """\
configuration (environment variables):
  required: KAFKA_BOOTSTRAP_SERVERS (host:port,...), KAFKA_GROUP_ID, SIDECAR_TOPICS (names or ^regexes)
  KAFKA_*   any librdkafka consumer property (KAFKA_SESSION_TIMEOUT_MS -> session.timeout.ms)
  SIDECAR_* the sidecar's own settings; `kafka-sidecar config` prints them all with their sources,
            and the README's "Configuration" section explains each one"""


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kafka-sidecar",
        description="The Kafka consumer-group member beside your app: streams records over gRPC, "
        "commits only what the app acked. Configured by KAFKA_* and SIDECAR_* environment variables.",
        epilog=CONFIGURATION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kafka-sidecar {__version__}")
    sub = parser.add_subparsers(dest="command")
    raw = argparse.RawDescriptionHelpFormatter
    sub.add_parser("run", help="run the sidecar (the default)", epilog=CONFIGURATION, formatter_class=raw)
    sub.add_parser(
        "config",
        help="print the effective configuration (secrets masked) and exit",
        epilog=CONFIGURATION,
        formatter_class=raw,
    )
    demo = sub.add_parser("demo", help="run a self-contained demo on an embedded local broker")
    demo.add_argument(
        "--records", type=_at_least_one, default=20000, help="records to produce (default 20000)"
    )
    demo.add_argument("--partitions", type=_at_least_one, default=6, help="topic partitions (default 6)")
    demo.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="run on this Kafka cluster instead of the embedded broker (a demo topic is created and deleted)",
    )
    dev = sub.add_parser(
        "dev",
        help="run a local broker, a topic with a trickle of records and the sidecar until Ctrl-C, "
        "to try a client against",
    )
    dev.add_argument("--grpc-address", default="127.0.0.1:50051", help="default 127.0.0.1:50051")
    dev.add_argument("--http-address", default="127.0.0.1:8080", help="default 127.0.0.1:8080")
    dev.add_argument("--partitions", type=_at_least_one, default=3, help="topic partitions (default 3)")
    dev.add_argument("--rate", type=_at_least_one, default=2, help="records produced a second (default 2)")
    dev.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="use this Kafka cluster instead of the embedded broker (a topic is created and deleted)",
    )
    args = parser.parse_args(argv)

    if args.command == "dev":
        from sidecar.devtools.dev import run_dev

        return run_dev(args.grpc_address, args.http_address, args.partitions, args.rate, args.bootstrap)
    if args.command == "demo":
        from sidecar.devtools.demo import run_demo

        return run_demo(records=args.records, partitions=args.partitions, bootstrap=args.bootstrap)

    config = _load_config()
    if args.command == "config":
        print(render(config))
        return 0

    from sidecar import daemon
    from sidecar.ops import logs

    logs.setup(config.log_level, config.log_format, kafka_debug=bool(config.kafka.get("debug")))
    return daemon.run(config)
