"""The Python client's conformance app: follows the conformance driver's instructions.

The driver (tests/conformance/driver.py) runs the same scenarios against every client's app. Protocol:
JSON lines. Instructions come on stdin (``{"seq": n, "op": ...}``) and each is answered with
``{"event": "ok"|"failed", "seq": n}``; records, assignment changes, rejections and a stream failure
are reported on stdout as they happen. End of stdin closes the consumer and exits.

Only the public API of ``kafka_sidecar_client`` is used, as an app would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from typing import Any

from kafka_sidecar_client import TLS, AssignmentChange, AsyncConsumer, Record, Rejection, SidecarError


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _tps(tps: frozenset[tuple[str, int]]) -> list[list[Any]]:
    return [[t, p] for t, p in sorted(tps)]


class App:
    """Holds the consumer and every record it delivered, by the id reported to the driver."""

    def __init__(self) -> None:
        self.consumer: AsyncConsumer | None = None
        self.records: dict[int, Record] = {}
        self.receiver: asyncio.Task[None] | None = None

    def emit(self, **event: Any) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def on_assignment(self, change: AssignmentChange) -> None:
        self.emit(
            event="assignment",
            assigned=_tps(change.assigned),
            added=_tps(change.added),
            revoked=_tps(change.revoked),
            lost=change.lost,
        )

    def on_rejection(self, r: Rejection) -> None:
        self.emit(
            event="rejection",
            code=r.code,
            kind=r.kind,
            topic=r.topic,
            partition=r.partition,
            offsets=list(r.offsets),
            ranges=[list(x) for x in r.ranges],
            reason=r.reason,
        )

    async def receive(self, consumer: AsyncConsumer) -> None:
        try:
            async for record in consumer:
                rid = len(self.records) + 1
                self.records[rid] = record
                self.emit(
                    event="record",
                    id=rid,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=_b64(record.key),
                    value=_b64(record.value),
                    headers=[[k, _b64(v)] for k, v in record.headers],
                    timestamp_ms=record.timestamp_ms,
                    delivery_attempt=record.delivery_attempt,
                )
        except SidecarError as e:
            self.emit(event="error", code=e.code.value[0] if e.code else 2, message=str(e))

    def pick(self, ids: list[int]) -> list[Record]:
        missing = [i for i in ids if i not in self.records]
        if missing:
            raise ValueError(f"no records with ids {missing}")
        return [self.records[i] for i in ids]

    async def do(self, ins: dict[str, Any]) -> None:
        op = ins["op"]
        if op == "connect":
            tls = ins.get("tls")  # {"ca_file", "cert_file", "key_file"}: files, as an app would have
            self.consumer = AsyncConsumer(
                ins["address"],
                max_in_flight=ins["max_in_flight"],
                on_assignment=self.on_assignment,
                on_rejection=self.on_rejection,
                manage_leases=ins.get("manage_leases", True),
                max_lease=ins.get("max_lease_ms", 3_600_000) / 1000,
                tls=TLS(ca=tls["ca_file"], cert=tls.get("cert_file"), key=tls.get("key_file"))
                if tls
                else False,
                token_file=ins.get("token_file"),
            )
            await self.consumer.connect()
            self.receiver = asyncio.create_task(self.receive(self.consumer))
            return
        c = self.consumer
        if c is None:
            raise RuntimeError("not connected")
        if op == "ack":
            c.ack(self.pick(ins["ids"]))
        elif op == "nack":
            if ins.get("delay_ms") is None:
                c.nack(self.pick(ins["ids"]))
            else:
                c.nack(self.pick(ins["ids"]), delay=ins["delay_ms"] / 1000)
        elif op == "extend":
            c.extend(self.pick(ins["ids"]))
        elif op == "reject":
            c.reject(self.pick(ins["ids"]), ins["reason"])
        elif op == "ack_offsets":
            c.ack_offsets(ins["topic"], ins["partition"], ins["offsets"], [tuple(r) for r in ins["ranges"]])
        elif op == "flush":
            await c.flush(timeout=10)
        elif op == "close":
            await c.close()
            if self.receiver is not None:
                await self.receiver
        else:
            raise ValueError(f"unknown op {op!r}")


async def main() -> None:
    app = App()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        ins = json.loads(line)
        try:
            await app.do(ins)
        except Exception as e:
            app.emit(event="failed", seq=ins.get("seq"), message=f"{type(e).__name__}: {e}")
        else:
            app.emit(event="ok", seq=ins.get("seq"))
    if app.consumer is not None:
        await app.consumer.close()


if __name__ == "__main__":
    asyncio.run(main())
