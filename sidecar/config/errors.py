"""The one error start-up stops with, and how values appear in it (one line, secrets masked)."""

from __future__ import annotations

import json

from sidecar.config.naming import KAFKA_PREFIX, MASK, is_secret, property_name


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
        head = f"{variable} is not set" if value is None else f"{variable}={quote(variable, value)}"
        super().__init__(escape(f"{head}: {problem or 'expected ' + expected}"))


class Invalid(ValueError):
    """Raised by a parser; its message is the specific ``expected`` text."""


def escape(text: str) -> str:
    """Escape what would break a line or a table (newlines, other control characters)."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def quote(variable: str, value: str) -> str:
    """The value as a one-line JSON string, masked when secret, shortened when long."""
    if variable.startswith(KAFKA_PREFIX) and is_secret(property_name(variable)) and value.strip():
        return '"' + MASK + '"'
    if len(value) > 120:
        value = value[:117] + "..."
    return json.dumps(value)
