"""Transport security of the channel to the sidecar: TLS or mutual TLS, and the bearer token.

The sidecar listens on a unix socket or loopback by default, and then neither is needed; when its gRPC
port is reachable from elsewhere it can require TLS (``SIDECAR_TLS_CERT_FILE``), a client certificate
(``SIDECAR_TLS_CLIENT_CA_FILE``) and a token (``SIDECAR_GRPC_TOKEN_FILE``).

The token travels as call metadata of each ``Consume`` call rather than as gRPC call credentials:
grpcio attaches call credentials only to TLS channels, and the sidecar also accepts a token over a
unix socket or plaintext (a shared pod where the socket's file mode is not enough). A token file is
read again whenever it changed, so a rotated secret is used from the next stream on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import grpc

#: PEM as bytes, or the path of a PEM file (``str`` or ``os.PathLike``).
Pem = Union[bytes, str, "os.PathLike[str]"]


def _pem(value: Pem | None, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the {what} file {os.fspath(value)!r}: {e.strerror}") from e


@dataclass(frozen=True)
class TLS:
    """TLS settings of the channel: pass ``tls=TLS(...)`` (or ``tls=True`` for the defaults).

    ``ca``: the CA bundle that signed the sidecar's certificate (default: the system's roots).
    ``cert`` and ``key``: the client certificate chain and its key, for mutual TLS; both or neither.
    ``server_name``: the name to check the sidecar's certificate for, when it is not the address's host
    (e.g. connecting by IP to a certificate for a DNS name). Each PEM is bytes or a file path; files
    are read when the consumer connects.
    """

    ca: Pem | None = None
    cert: Pem | None = None
    key: Pem | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLS: give both cert and key (mutual TLS) or neither")

    def credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials, reading any PEM files now."""
        return grpc.ssl_channel_credentials(
            root_certificates=_pem(self.ca, "CA"),
            private_key=_pem(self.key, "client key"),
            certificate_chain=_pem(self.cert, "client certificate"),
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


class Token:
    """The bearer token sent with every call: a fixed string, or a file read again when it changes.

    Its value never appears in ``repr`` or a log line.
    """

    def __init__(self, token: str | None = None, file: str | os.PathLike[str] | None = None) -> None:
        if (token is None) == (file is None):
            raise ValueError("give token or token_file, not both")
        if token is not None:
            _check(token, "token")
        self._value = token
        self._file = None if file is None else Path(file)
        self._stamp: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"Token(file={os.fspath(self._file)!r})" if self._file else "Token(<set>)"

    def value(self) -> str:
        """The current token; a token file is read again if its size or mtime changed."""
        if self._file is None:
            assert self._value is not None
            return self._value
        try:
            st = self._file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp or self._value is None:
                value = self._file.read_text().strip()
                _check(value, f"token file {os.fspath(self._file)!r}")
                self._value, self._stamp = value, stamp
        except OSError as e:
            raise ValueError(f"cannot read the token file {os.fspath(self._file)!r}: {e.strerror}") from e
        return self._value

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.value()}"),)


def _check(token: str, what: str) -> None:
    # Metadata values must be printable ASCII; say so here rather than fail inside gRPC.
    if not token or not all(" " <= ch <= "~" for ch in token):
        raise ValueError(f"{what}: a token must be non-empty printable ASCII")


def token_source(token: str | None, token_file: str | os.PathLike[str] | None) -> Token | None:
    if token is None and token_file is None:
        return None
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    return Token(token, token_file)
