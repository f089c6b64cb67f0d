"""The Python client's TLS, mutual TLS and token options, against an in-process fake sidecar (no Kafka).

The fake serves over TLS (certificates made at test time) and records each stream's metadata, so the
tests see what the client really sends; the real sidecar's side is tests/test_transport_security.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from test_client_unit import Abort, FakeSidecar, batch, record
from tls_support import Authority, Pem

from kafka_sidecar_client import TLS, AsyncConsumer, SidecarError
from kafka_sidecar_client._proto import sidecar_pb2 as pb
from kafka_sidecar_client._proto import sidecar_pb2_grpc

TOKEN = "s3cret-token-for-tests"


class MetadataSidecar(FakeSidecar):
    """A fake sidecar that also keeps every stream's ``authorization`` metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str | None] = []

    async def Consume(
        self, request_iterator: AsyncIterator[pb.ConsumeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ConsumeResponse]:
        self.tokens.append(dict(context.invocation_metadata() or ()).get("authorization"))
        async for response in super().Consume(request_iterator, context):
            yield response


async def _serve(creds: grpc.ServerCredentials) -> tuple[grpc.aio.Server, MetadataSidecar]:
    server = grpc.aio.server()
    sidecar = MetadataSidecar()
    sidecar_pb2_grpc.add_ConsumerServiceServicer_to_server(sidecar, server)  # type: ignore[no-untyped-call]
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    sidecar.address = f"127.0.0.1:{port}"
    return server, sidecar


@pytest.fixture
def pki(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


@pytest.fixture
async def mtls(pki: Authority) -> AsyncIterator[MetadataSidecar]:
    """A fake sidecar that wants a client certificate signed by ``pki``."""
    cert, key = pki.issue("sidecar").read()
    creds = grpc.ssl_server_credentials([(key, cert)], pki.pem.read_bytes(), require_client_auth=True)
    server, sidecar = await _serve(creds)
    yield sidecar
    await server.stop(0)


async def test_mutual_tls_from_files_with_a_token(mtls: MetadataSidecar, pki: Authority) -> None:
    client = pki.issue("app", client=True)
    mtls.send(0, batch(record(0, 5)))
    tls = TLS(ca=str(pki.pem), cert=client.cert, key=client.key)
    async with AsyncConsumer(mtls.address, tls=tls, token=TOKEN) as c:
        (got,) = await c.receive(timeout=10)
        assert got.offset == 5
    assert mtls.tokens == [f"Bearer {TOKEN}"]


async def test_mutual_tls_from_bytes_without_a_token(mtls: MetadataSidecar, pki: Authority) -> None:
    cert, key = pki.issue("app", client=True).read()
    mtls.send(0, batch(record(0, 1)))
    async with AsyncConsumer(mtls.address, tls=TLS(ca=pki.pem.read_bytes(), cert=cert, key=key)) as c:
        assert len(await c.receive(timeout=10)) == 1
    assert mtls.tokens == [None], "no token configured: no authorization metadata"


async def test_a_client_without_a_certificate_is_refused_and_retries(
    mtls: MetadataSidecar, pki: Authority
) -> None:
    async with AsyncConsumer(mtls.address, tls=TLS(ca=pki.pem)) as c:
        assert await c.receive(timeout=1.5) == []  # the handshake fails: UNAVAILABLE, retried
    assert mtls.tokens == [], "no stream reached the service"


async def test_an_untrusted_server_is_not_talked_to(mtls: MetadataSidecar, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = Authority(tmp_path / "other", "other-ca")
    client = other.issue("app", client=True)
    async with AsyncConsumer(mtls.address, tls=TLS(ca=other.pem, cert=client.cert, key=client.key)) as c:
        assert await c.receive(timeout=1.5) == []
    assert mtls.tokens == []


async def test_token_file_is_read_again_when_it_changes(
    mtls: MetadataSidecar, pki: Authority, tmp_path: Path
) -> None:
    client = pki.issue("app", client=True)
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")  # a trailing newline, as `kubectl create secret` may leave
    mtls.send(0, batch(record(0, 0)))
    mtls.send(1, batch(record(0, 0)))
    tls = TLS(ca=pki.pem, cert=client.cert, key=client.key)
    async with AsyncConsumer(mtls.address, tls=tls, token_file=token_file) as c:
        assert len(await c.receive(timeout=10)) == 1
        token_file.write_text("second-token-longer")
        os.utime(token_file, ns=(1, 1))  # a different mtime even on a coarse clock
        mtls.send(0, Abort(grpc.StatusCode.UNAVAILABLE, "restarting"))  # the client opens a new stream
        assert len(await c.receive(timeout=10)) == 1  # from the second stream
    assert mtls.tokens == ["Bearer first-token", "Bearer second-token-longer"]


async def test_unauthenticated_is_an_error_not_a_retry(mtls: MetadataSidecar, pki: Authority) -> None:
    client = pki.issue("app", client=True)
    mtls.send(0, Abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token"))
    async with AsyncConsumer(mtls.address, tls=TLS(ca=pki.pem, cert=client.cert, key=client.key)) as c:
        with pytest.raises(SidecarError) as failed:
            await c.receive(timeout=10)
    assert failed.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert len(mtls.tokens) == 1, "not retried"


async def test_token_over_plaintext_is_sent_too() -> None:
    """The sidecar accepts a token on a unix socket or plaintext port, so the client sends it there."""
    server = grpc.aio.server()
    sidecar = MetadataSidecar()
    sidecar_pb2_grpc.add_ConsumerServiceServicer_to_server(sidecar, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        sidecar.send(0, batch(record(0, 0)))
        async with AsyncConsumer(f"127.0.0.1:{port}", token=TOKEN) as c:
            assert len(await c.receive(timeout=10)) == 1
        assert sidecar.tokens == [f"Bearer {TOKEN}"]
    finally:
        await server.stop(0)


def test_options_are_checked_up_front(tmp_path: Path, pki: Authority) -> None:
    client: Pem = pki.issue("app", client=True)
    with pytest.raises(ValueError, match="both cert and key"):
        TLS(cert=client.cert)
    with pytest.raises(ValueError, match="not both"):
        AsyncConsumer("127.0.0.1:1", token="a", token_file=tmp_path / "t")
    with pytest.raises(ValueError, match="printable ASCII"):
        AsyncConsumer("127.0.0.1:1", token="line\nbreak")
    c = AsyncConsumer("127.0.0.1:1", tls=True, token=TOKEN)
    assert c.tls == TLS()
    assert TOKEN not in repr(c._token)


async def test_a_missing_file_fails_connect(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token file"):
        await AsyncConsumer("127.0.0.1:1", token_file=tmp_path / "absent").connect()
    with pytest.raises(ValueError, match="CA file"):
        await AsyncConsumer("127.0.0.1:1", tls=TLS(ca=tmp_path / "absent.pem")).connect()
