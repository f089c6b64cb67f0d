"""Names: ``KAFKA_*`` variables <-> librdkafka properties, which properties are secret, and the
Kubernetes service-link variables that are neither."""

from __future__ import annotations

import re

KAFKA_PREFIX = "KAFKA_"
SIDECAR_PREFIX = "SIDECAR_"
POD_NAME = "POD_NAME"
DEFAULT = "default"
MASK = "****"

_SECRET_WORDS = ("password", "passphrase", "secret", "token", "credentials")
_SECRET_PROPERTIES = frozenset({"sasl.jaas.config", "sasl.oauthbearer.config"})
PROPERTY_NAME = re.compile(r"[a-z0-9]+(?:[._][a-z0-9]+)*")
# Kubernetes service links: <SVC>_SERVICE_HOST, <SVC>_SERVICE_PORT[_<NAME>], <SVC>_PORT[_<N>_<PROTO>[_...]].
_SERVICE_LINK = re.compile(
    r"[A-Z0-9_]+_(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT(?:_[0-9]+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)"
)


def property_name(variable: str) -> str:
    """``KAFKA_SSL__KEY_X`` -> ``ssl_key.x``: drop the prefix, lower-case, ``__`` -> ``_``, ``_`` -> ``.``."""
    rest = variable[len(KAFKA_PREFIX) :].lower()
    return "_".join(part.replace("_", ".") for part in rest.split("__"))


def variable_name(kafka_property: str) -> str:
    """The inverse of :func:`property_name`: ``ssl_key.x`` -> ``KAFKA_SSL__KEY_X``."""
    return KAFKA_PREFIX + kafka_property.upper().replace("_", "__").replace(".", "_")


def is_secret(kafka_property: str) -> bool:
    name = kafka_property.lower()
    return name in _SECRET_PROPERTIES or name.endswith(".pem") or any(word in name for word in _SECRET_WORDS)


def is_service_link(variable: str) -> bool:
    return _SERVICE_LINK.fullmatch(variable) is not None
