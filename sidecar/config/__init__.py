"""Configuration: environment variables in, one validated immutable :class:`Config` out.

The sidecar is configured only by environment variables. That is the twelve-factor way, and it is what a
Kubernetes pod spec offers natively: ``env``/``envFrom`` from ConfigMaps and Secrets, the downward API
(``POD_NAME``), ``kubectl set env``. There is no config file to mount, template or keep in sync.

Naming
------
``SIDECAR_*``
    The sidecar's own settings (topics, addresses, buffer and batch limits, timings, logging); the table is
    ``SETTINGS`` below. Any other ``SIDECAR_*`` variable is an error, so a typo cannot pass silently.
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

This package is pure (stdlib only, no librdkafka or gRPC) so it is tested in microseconds. Its modules,
in the order they build on each other: ``naming`` (variables and properties, secrets), ``errors``
(``ConfigError``), ``values`` (value parsers), ``settings`` (the ``SIDECAR_*`` table), ``kafka`` (the
``KAFKA_*`` properties and their rules) and ``model`` (``Config`` and ``render``).
"""

from sidecar.config.errors import ConfigError
from sidecar.config.model import Config, render
from sidecar.config.naming import is_secret, is_service_link

__all__ = ["Config", "ConfigError", "is_secret", "is_service_link", "render"]
