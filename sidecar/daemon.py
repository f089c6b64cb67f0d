"""Wires the sidecar together and runs it until SIGTERM/SIGINT.

Start-up: gRPC server (NOT_SERVING) and HTTP endpoints first, so probes and apps can connect; then
the member's poll thread, which joins the group; health turns SERVING on the first assignment.

Shutdown (SIGTERM/SIGINT, or the poll thread dying): stop delivering, wait for in-flight acks up to
the drain timeout, commit synchronously, close the consumer (a static member does not leave the
group), end app streams with UNAVAILABLE, exit 0 (1 if the member failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import uvloop

from sidecar import compiled
from sidecar.api.service import Server
from sidecar.api.transport_security import CertificateFiles, TokenFile
from sidecar.assembly import build
from sidecar.config import Config
from sidecar.group import Member
from sidecar.ops import metrics
from sidecar.ops.collector import Collector
from sidecar.ops.http import (
    HttpServer,
    ListenError,
    Probe,
    member_ready,
    poll_liveness,
    progress_liveness,
    readiness,
)
from sidecar.ops.progress import ProgressWatch, Readings

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 30.0


async def serve(config: Config) -> int:
    loop = asyncio.get_running_loop()
    group, member = build(config, loop)

    server = Server(
        group,
        config.grpc_address,
        config.ack_timeout_ms,
        config.max_request_bytes,
        max_streams=config.max_streams,
        socket_mode=config.grpc_socket_mode,
        tls=_tls(config),
        token=TokenFile(config.grpc_token_file) if config.grpc_token_file else None,
    )
    await server.start()
    draining = False
    # A revoke holds the poll thread for up to the revoke grace: only longer than that is "stuck".
    turning = poll_liveness(
        lambda: member.last_poll, lambda: member.alive, config.revoke_grace_ms / 1000 + 15
    )

    def readings() -> Readings:
        return Readings(
            moved=metrics.total(metrics.RECORDS_RECEIVED, metrics.RECORDS_DELIVERED, metrics.RECORDS_ACKED),
            lag=member.lag(),
            held=group.held,
            credit=group.credit,
            backpressure=member.paused,
            parked=group.parked,
            holding=member.holding,
        )

    watch = ProgressWatch(config.stall_timeout_ms / 1000) if config.stall_timeout_ms else None
    healthy = progress_liveness(turning, watch, readings)
    as_member = member_ready(member.joined.is_set, lambda: draining, healthy, lambda: _out_why(member))
    http = None
    if config.http_address is not None:
        ready = readiness(as_member, lambda: group.app_streams, require_app=config.readiness == "app")
        http = HttpServer(*config.http_address, healthy=healthy, ready=ready)
        try:
            await http.start()
        except ListenError:
            await http.stop()
            await server.stop(grace_s=0)
            raise
    log.info(
        "kafka-sidecar serving gRPC on %s (%s)%s; topics %s; %s",
        config.grpc_address,
        _protection(config),
        f", HTTP on {config.http_address[0]}:{config.http_address[1]}" if config.http_address else "",
        ",".join(config.topics),
        _membership(config),
    )

    if uncompiled := compiled.missing():
        log.warning(
            "%s not built (installed without a C compiler): the sidecar runs the same code in Python, at"
            " about 1 us more per record",
            ", ".join(uncompiled),
        )

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    collector = asyncio.create_task(Collector().run())
    member.start()
    timers = asyncio.create_task(group.run())
    joined = asyncio.create_task(asyncio.to_thread(member.joined.wait))
    member_done = asyncio.create_task(group.member_stopped.wait())
    stopping = asyncio.create_task(stop.wait())
    in_step: asyncio.Task[None] | None = None
    await asyncio.wait({joined, member_done, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if joined.done() and not member_done.done() and not stopping.done():
        in_step = asyncio.create_task(_health_in_step(server, as_member))
        log.info("joined the %s group: serving", config.group_type)
    await asyncio.wait({member_done, stopping}, return_when=asyncio.FIRST_COMPLETED)

    # -- shutdown ------------------------------------------------------------------------------
    started = time.monotonic()
    draining = True
    if in_step is not None:
        in_step.cancel()
    await server.set_serving(False)
    timers.cancel()
    if not member_done.done():
        log.info("shutting down: draining in-flight records (up to %d ms)", config.drain_timeout_ms)
        await group.shutdown(config.drain_timeout_ms / 1000, CLOSE_TIMEOUT_S + config.revoke_grace_ms / 1000)
        await asyncio.to_thread(member.join, 5.0)
    await server.stop(grace_s=1.0)
    if http is not None:
        await http.stop()
    for task in (joined, member_done, stopping, timers, collector):
        task.cancel()
    member.joined.set()  # release the to_thread waiter, if any
    with contextlib.suppress(asyncio.CancelledError):
        await timers
    with contextlib.suppress(asyncio.CancelledError):
        await collector
    failed = group.member_error is not None
    log.info(
        "kafka-sidecar stopped in %.2fs%s",
        time.monotonic() - started,
        " after a member failure" if failed else "",
    )
    return 1 if failed else 0


async def _health_in_step(server: Server, probe: Probe, interval_s: float = 0.5) -> None:
    """grpc.health.v1 follows the member's readiness: NOT_SERVING while the poll thread is stuck."""
    serving: bool | None = None
    while True:
        ok, why = probe()
        if ok != serving:
            await server.set_serving(ok)
            if serving is not None:
                log.warning("gRPC health now %s: %s", "SERVING" if ok else "NOT_SERVING", why)
            serving = ok
        await asyncio.sleep(interval_s)


#: Exit status when the sidecar cannot listen where it was told to (as for a configuration error).
EXIT_LISTEN = 2


def run(config: Config) -> int:
    """Serve until SIGTERM/SIGINT; a gRPC or HTTP address that cannot be listened on is one log line."""
    try:
        return uvloop.run(serve(config))
    except ListenError as exc:
        log.error("%s", exc)
        return EXIT_LISTEN


def _protection(config: Config) -> str:
    """How the gRPC port is protected, for the start-up line."""
    parts = ["mutual TLS" if config.tls_client_ca_file else "TLS" if config.tls_cert_file else "plaintext"]
    if config.grpc_token_file:
        parts.append("bearer token")
    if config.grpc_address.startswith("unix:"):
        parts.append(f"socket mode 0{config.grpc_socket_mode:03o}")
    return ", ".join(parts)


def _tls(config: Config) -> CertificateFiles | None:
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    return CertificateFiles(config.tls_cert_file, config.tls_key_file, config.tls_client_ca_file)


def _membership(config: Config) -> str:
    """What kind of member the sidecar is, for the start-up line."""
    if config.share:
        return f"share group member ({config.share_consumers} share consumers)"
    static = f"static ({config.kafka['group.instance.id']})" if config.static_member else "dynamic"
    return f"{static} member, group protocol {config.kafka.get('group.protocol', 'classic')}"


def _out_why(member: Member) -> str | None:
    """Why the member is not in the group, or not served by it, though it runs: it waits to join again;
    Kafka refuses it (credentials, TLS trust, ACLs: joined or not, it gets no records); or, not joined
    yet, no broker answers. A joined member stays ready through a broker outage: it still holds its
    partitions and the records in hand, and commits when the brokers are back."""
    if member.waiting is not None:
        return member.waiting
    if member.reach.refusal is not None:
        return member.reach.problem()
    return None if member.joined.is_set() else member.reach.problem()
