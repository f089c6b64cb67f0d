"""Raw garbage on the gRPC port leaves the sidecar serving: not HTTP/2 at all, a preface cut short,
frames with lying lengths, an oversized frame, a flood of random bytes; over TCP and over the unix
socket. After each, a real stream still gets its records."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from grpc_health.v1 import health_pb2
from kafka_helpers import SidecarFactory, SidecarProcess, TopicFactory
from raw_stream import RawStream

from sidecar.api.transport_security import unix_socket_path
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce

pytestmark = pytest.mark.integration

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


GARBAGE = {
    "http/1.1": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "half a preface": PREFACE[:10],
    "preface then junk": PREFACE + b"\xff" * 64,
    "lying frame length": PREFACE + _frame(4, 0, 0, b"") + _frame(1, 4, 1, b"\x00" * 8, length=0xFFFFFF),
    "oversized settings": PREFACE + _frame(4, 0, 0, b"\x00\x05\xff\xff\xff\xff" * 2000),
    "headers on stream 0": PREFACE + _frame(4, 0, 0, b"") + _frame(1, 5, 0, b"\x82\x86\x84"),
    "random": random.Random(7).randbytes(64 * 1024),
}


def _send(sidecar: SidecarProcess, payload: bytes) -> None:
    address = sidecar.grpc_address
    path = unix_socket_path(address)
    target: str | tuple[str, int]
    if path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = path
    else:
        host, port = address.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    with sock:
        sock.settimeout(5)
        sock.connect(target)
        try:
            sock.sendall(payload)
            sock.recv(4096)  # whatever the server says (a GOAWAY, or nothing before it closes)
        except OSError:
            pass  # reset: the server hung up on the garbage, as it should


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_garbage_on_the_grpc_port_leaves_the_sidecar_serving(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    unix: bool,
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 100, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, unix_socket=unix)
    for name, payload in GARBAGE.items():
        _send(sidecar, payload)
        assert sidecar.is_running(), f"after {name}: {sidecar.log_tail()}"
        assert sidecar.health_status() == health_pb2.HealthCheckResponse.SERVING, name
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=100)
        assert len(stream.records(100)) == 100
    assert "Traceback" not in sidecar.log_text()
