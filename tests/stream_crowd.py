"""A test app with many streams to one sidecar: the shape of an app that crashes with all of them open.

Opens ``--streams`` ConsumerService streams spread over ``--channels`` connections, grants each
``--credit`` records, and writes every record it receives as ``partition offset attempt`` (flushed
per batch, so a SIGKILL loses nothing already written). With ``--ack`` it acks every batch and grants
the credit again; without, it holds what it got and waits to be killed. Raw gRPC (the generated
stub), so the test sees exactly what the sidecar sends, not what a client library makes of it.
Usage: ``python tests/stream_crowd.py ADDRESS OUT [--streams N] [--channels C] [--credit K] [--ack]``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from typing import TextIO

import grpc
from raw_stream import rows

from sidecar._proto import sidecar_pb2 as pb
from sidecar._proto import sidecar_pb2_grpc as pb_grpc


async def one_stream(stub: pb_grpc.ConsumerServiceStub, out: TextIO, credit: int, ack: bool) -> None:
    requests: asyncio.Queue[pb.ConsumeRequest] = asyncio.Queue()
    requests.put_nowait(pb.ConsumeRequest(credit=credit))

    async def send() -> AsyncIterator[pb.ConsumeRequest]:
        while True:
            yield await requests.get()

    call = stub.Consume(send())
    try:
        async for response in call:
            if not response.HasField("records"):
                continue
            got = rows(response.records)
            out.write("".join(f"{r.partition} {r.offset} {r.delivery_attempt}\n" for r in got))
            out.flush()
            if ack:
                acks = [
                    pb.PartitionOffsets(topic=r.topic, partition=r.partition, offsets=[r.offset]) for r in got
                ]
                requests.put_nowait(pb.ConsumeRequest(acks=acks, credit=len(got)))
    except grpc.aio.AioRpcError:
        return  # the sidecar went away or ended the stream: this app only records what it saw


def stub(channel: grpc.aio.Channel) -> pb_grpc.ConsumerServiceStub:
    return pb_grpc.ConsumerServiceStub(channel)  # type: ignore[no-untyped-call]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("out")
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--credit", type=int, default=20)
    parser.add_argument("--ack", action="store_true")
    args = parser.parse_args()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    channels = [grpc.aio.insecure_channel(args.address) for _ in range(args.channels)]
    with open(args.out, "a") as out:  # noqa: ASYNC230 (a test app: line writes are fine)
        streams = [
            asyncio.create_task(one_stream(stub(channels[i % len(channels)]), out, args.credit, args.ack))
            for i in range(args.streams)
        ]
        print(f"{args.streams} streams open", flush=True)
        await stop.wait()
        for task in streams:
            task.cancel()
    for channel in channels:
        await channel.close()


if __name__ == "__main__":
    asyncio.run(main())
