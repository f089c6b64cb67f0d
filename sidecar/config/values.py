"""Parsers of the sidecar's setting values: each returns the value or raises ``Invalid`` with what
was expected, which becomes the ``ConfigError``'s text."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable

from sidecar.config.errors import Invalid

_WHOLE = re.compile(r"[0-9]+")
_SIZE = re.compile(r"([0-9]+)\s*(|KiB|MiB|GiB|Ki|Mi|Gi)", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_KAFKA_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")  # topics, group.instance.id
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")  # a DNS name or an IPv4 address
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
_LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARNING", "WARN": "WARNING", "ERROR": "ERROR"}


def whole(text: str, expected: str, low: int, high: int | None = None) -> int:
    if not _WHOLE.fullmatch(text):
        raise Invalid(expected)
    number = int(text)
    if number < low or (high is not None and number > high):
        raise Invalid(expected)
    return number


def _parse_size(text: str, expected: str) -> int:
    match = _SIZE.fullmatch(text)
    if not match:
        raise Invalid(expected)
    number = int(match[1]) * _UNITS[match[2][:1].lower()]
    if number <= 0:
        raise Invalid(expected)
    return number


def check_kafka_name(name: str, what: str) -> None:
    if not _KAFKA_NAME.fullmatch(name) or name in (".", ".."):
        rule = '[A-Za-z0-9._-], 1 to 249 characters, not "." or ".."'
        raise Invalid(f"{what} made of {rule}; {json.dumps(name)} is not")


def parse_topics(text: str) -> tuple[str, ...]:
    topics: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise Invalid("comma-separated topics without empty entries")
        if item in topics:
            raise Invalid(f"each topic once; {json.dumps(item)} is listed twice")
        if item.startswith("^"):
            try:
                re.compile(item)
            except re.error as exc:
                expected = f"^regex subscriptions that compile; {json.dumps(item)} does not: {exc}"
                raise Invalid(expected) from None
        else:
            check_kafka_name(item, "topic names (or ^regexes)")
        topics.append(item)
    return tuple(topics)


def _split_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host without brackets, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise Invalid("[ipv6]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Invalid(f"a valid IPv6 address inside [ ]; {json.dumps(host)} is not") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise Invalid("host:port")
        if ":" in host:
            raise Invalid("an IPv6 address in brackets: [ipv6]:port")
        if not _HOST.fullmatch(host):
            raise Invalid(f"a hostname or IP address before the port; {json.dumps(host)} is not")
    return host, whole(port, "a port from 0 to 65535", 0, 65535)


def parse_grpc_address(text: str) -> str:
    if not text.startswith("unix:"):
        _split_host_port(text)
        return text
    path = text[len("unix:") :]
    if path.startswith("//"):
        path = path[2:]
    if not path.startswith("/") or "\0" in path:
        raise Invalid("an absolute socket path: unix:///path/to/socket")
    if len(path.encode()) > _UNIX_PATH_MAX:
        raise Invalid(f"a socket path of at most {_UNIX_PATH_MAX} bytes")
    return "unix://" + path


def parse_http_address(text: str) -> tuple[str, int] | None:
    if text.lower() == "off":
        return None
    return _split_host_port(text)


def parse_log_level(text: str) -> str:
    try:
        return _LOG_LEVELS[text.upper()]
    except KeyError:
        raise Invalid("DEBUG, INFO, WARNING or ERROR") from None


def parse_log_format(text: str) -> str:
    if text.lower() not in ("text", "json"):
        raise Invalid("text or json")
    return text.lower()


def choice(*choices: str) -> Callable[[str], str]:
    expected = ", ".join(choices[:-1]) + " or " + choices[-1]

    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise Invalid(expected)
        return text.lower()

    return parse


def optional_topic(text: str) -> str | None:
    if not text:
        return None
    check_kafka_name(text, "a topic name")
    return text


def _readable(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Invalid(f"a readable file; {json.dumps(path)}: {exc.strerror or exc}") from None


def optional_file(text: str) -> str | None:
    """A readable file (a certificate, a key), or None when unset."""
    if text:
        _readable(text)
    return text or None


def token_file(text: str) -> str | None:
    """A readable file holding a token (not empty), or None when unset."""
    if text and not _readable(text).strip():
        raise Invalid(f"a file holding the token; {json.dumps(text)} is empty")
    return text or None


def file_mode(text: str) -> int:
    """Octal permissions, such as 0660 or 600."""
    expected = "octal permissions from 0 to 0777, such as 0660"
    if not re.fullmatch(r"0?[0-7]{1,3}|0o[0-7]{1,3}", text):
        raise Invalid(expected)
    return int(text.removeprefix("0o"), 8)


def attempts(text: str) -> int:
    return whole(text, "a whole number of deliveries >= 0 (0 = unlimited)", 0)


def metadata_bytes(text: str) -> int:
    return whole(text, "a whole number of bytes from 0 (off) to 1000000", 0, 1_000_000)


def millis(low: int) -> Callable[[str], int]:
    expected = f"a whole number of milliseconds {'> 0' if low else '>= 0'}"
    return lambda text: whole(text, expected, low)


def record_count(high: int | None = None) -> Callable[[str], int]:
    expected = "a whole number of records " + (f"from 1 to {high}" if high else "> 0")
    return lambda text: whole(text, expected, 1, high)


def byte_size(text: str) -> int:
    expected = "a whole number of bytes > 0, optionally with a KiB, MiB or GiB suffix (e.g. 64MiB)"
    return _parse_size(text, expected)
