"""The ``kafka-sidecar`` command: ``run`` (the default), ``config``, ``demo``."""

from __future__ import annotations

import argparse
import os
import sys

from sidecar import __version__

EXIT_CONFIG = 2


def _load_config() -> object:
    from sidecar.config import Config, ConfigError

    try:
        config = Config.from_env(os.environ)
        _check_with_librdkafka(config)
    except ConfigError as exc:
        print(f"kafka-sidecar: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return config


def _check_with_librdkafka(config: object) -> None:
    """librdkafka judges KAFKA_* names and values; its complaint is mapped back to the variable."""
    import re

    from confluent_kafka import KafkaException

    from sidecar.config import Config, ConfigError
    from sidecar.member import check_kafka_config

    assert isinstance(config, Config)
    try:
        check_kafka_config(config.kafka)
    except KafkaException as exc:
        message = str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)
        match = re.search(r'property "([^"]+)"', message)
        prop = match.group(1) if match else ""
        variable = config.env_name(prop) if prop else "KAFKA_*"
        value = config.kafka.get(prop, "")
        err = ConfigError.__new__(ConfigError)
        ValueError.__init__(err, f'{variable}="{value}": {message}' if prop else message)
        err.variable, err.expected = variable, message
        raise err from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kafka-sidecar",
        description="The Kafka consumer-group member beside your app: streams records over gRPC, "
        "commits only what the app acked. Configured by KAFKA_* and SIDECAR_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"kafka-sidecar {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the sidecar (the default)")
    sub.add_parser("config", help="print the effective configuration (secrets masked) and exit")
    demo = sub.add_parser("demo", help="run a self-contained demo on an embedded local broker")
    demo.add_argument("--records", type=int, default=20000, help="records to produce (default 20000)")
    demo.add_argument("--partitions", type=int, default=6, help="topic partitions (default 6)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from sidecar.demo import run_demo

        return run_demo(records=args.records, partitions=args.partitions)

    config = _load_config()
    from sidecar.config import Config, render

    assert isinstance(config, Config)
    if args.command == "config":
        print(render(config))
        return 0

    from sidecar import daemon, logs

    logs.setup(config.log_level, config.log_format)
    return daemon.run(config)
