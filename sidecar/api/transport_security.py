"""Who may talk to the gRPC port: TLS and mutual TLS from PEM files, a bearer token, the socket's mode.

Part of the gRPC side (with ``service``). Each piece is off unless configured; the defaults (a unix
socket or 127.0.0.1) already keep the port inside the pod.

- **TLS.** The certificate, key and (for mutual TLS) client CA are read from files, and read again when
  one of them changes (cert-manager rotates a mounted Secret by swapping a symlink): gRPC asks for the
  configuration at each new handshake, and the answer is "unchanged" unless a file's identity (inode,
  size, modification time) moved. Connections already open keep their session, so healthy streams
  are not dropped. A rotation that leaves the files unreadable or mismatched is logged and the last
  good configuration stays.
- **Bearer token.** With a token file, every call but the health checks must carry the metadata
  ``authorization: Bearer <token>``; the comparison takes constant time, and a refusal is
  ``UNAUTHENTICATED`` without echoing what was sent. Reflection needs the token too: it describes the
  service to whoever asks, which is the caller's business only once it may call. The file is read again
  when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

#: Services a probe may call without the token.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})


def _identity(path: str) -> tuple[int, int, int]:
    st = os.stat(path)  # follows symlinks: a swapped ..data link shows as a new inode
    return st.st_ino, st.st_size, st.st_mtime_ns


class CertificateFiles:
    """The server's TLS configuration from PEM files, read again when one of them changes."""

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str | None = None) -> None:
        self._paths = [p for p in (cert_file, key_file, client_ca_file) if p]
        self._cert, self._key, self._ca = cert_file, key_file, client_ca_file
        self._seen = self._identities()
        self.reloads = 0

    def _identities(self) -> list[tuple[int, int, int]]:
        return [_identity(p) for p in self._paths]

    def _configuration(self) -> Any:
        cert, key = Path(self._cert).read_bytes(), Path(self._key).read_bytes()
        ca = Path(self._ca).read_bytes() if self._ca else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> Any:
        """gRPC's question at each handshake: a new configuration, or None for "unchanged"."""
        try:
            now = self._identities()
            if now == self._seen:
                return None
            configuration = self._configuration()
        except (OSError, ValueError) as exc:
            log.warning("TLS files changed but cannot be read; keeping the previous ones: %s", exc)
            return None
        self._seen = now
        self.reloads += 1
        log.info("TLS certificate files changed: serving the new ones to new connections")
        return configuration

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self.fetch, require_client_authentication=self._ca is not None
        )


class TokenFile:
    """The expected bearer token, read from a file and read again when the file changes."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._seen = _identity(path)
        self._token = self._read()

    def _read(self) -> bytes:
        return Path(self._path).read_bytes().strip()

    def current(self) -> bytes:
        try:
            now = _identity(self._path)
            if now != self._seen:
                token = self._read()
                if token:
                    self._token, self._seen = token, now
                    log.info("the gRPC token file changed: the new token is required from now on")
        except OSError as exc:
            log.warning("cannot read the gRPC token file again; keeping the previous token: %s", exc)
        return self._token

    def accepts(self, authorization: str | bytes | None) -> bool:
        """Whether the metadata value is ``Bearer <the token>`` (constant time in the token)."""
        if isinstance(authorization, str):
            authorization = authorization.encode()
        if not authorization or authorization[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(authorization[7:].strip(), self.current())


class TokenCheck(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls without the bearer token with UNAUTHENTICATED; the health service stays open."""

    def __init__(self, token: TokenFile) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        service = handler_call_details.method.lstrip("/").split("/", 1)[0]
        if handler is None or service in OPEN_SERVICES:
            return handler
        metadata = handler_call_details.invocation_metadata or ()
        authorization = next((v for k, v in metadata if k == "authorization"), None)
        if self._token.accepts(authorization):
            return handler
        return _refusal(handler)


_REFUSAL = (
    "missing or wrong bearer token: send the metadata 'authorization: Bearer <token>' "
    "(the token is in the sidecar's SIDECAR_GRPC_TOKEN_FILE)"
)
#: A streaming call is refused after its first message (or this long without one). A client writes its
#: first message (an app's credit) as it opens the stream; refused before that write lands, grpc's
#: Python client marks its own call INTERNAL ("Internal error from Core", grpc/grpc#36066) instead of
#: reporting UNAUTHENTICATED.
READ_BEFORE_REFUSING_S = 1.0


async def _refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)


async def _refuse_stream(_requests: Any, context: grpc.aio.ServicerContext) -> None:
    with contextlib.suppress(Exception):  # none came, or the call ended: refuse all the same
        await asyncio.wait_for(context.read(), READ_BEFORE_REFUSING_S)
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSAL)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that only refuses."""
    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(_refuse_stream, **codec)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(_refuse_stream, **codec)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_refuse, **codec)
    return grpc.unary_unary_rpc_method_handler(_refuse, **codec)


def unix_socket_path(address: str) -> str | None:
    """The filesystem path of a ``unix:`` address (``unix:///abs``, ``unix:/abs``), else None."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:") :]
    return path[2:] if path.startswith("//") else path
