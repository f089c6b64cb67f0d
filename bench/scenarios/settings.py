"""The two parameter sets of the harness: ``ci`` (seconds, small group, short timeouts) and ``full``.

The full set keeps every default that matters as it is in production: the sidecar's own defaults
(cooperative-sticky, 10 s session) and, for the baseline, librdkafka's (eager assignment, dynamic
members, 45 s session timeout). The KIP-848 sidecars get the same 10 s session from the broker the
harness starts (``session_ms``; Kafka's own default for consumer groups is 45 s, set per group or per
broker). The CI set shortens the session timeout to 6 s for all (the minimum real Kafka accepts for
classic members) and keeps everything else.

Share groups (``sidecar-share``): each run's share group is configured before its first member joins
(from the earliest records, with ``share_lock_ms`` and Kafka's delivery limit), and the broker gives
share members ``session_ms``/``heartbeat_ms`` as it gives KIP-848 members. ``scale_*`` shape the
scale-out scenario: more app workers than partitions, each slower per record than its share of the
producer's rate, so that throughput shows how many workers really have work.

Membership: the sidecars run as *static* members (POD_NAME as group.instance.id, kept across restarts,
as a StatefulSet gives) on Apache Kafka, and as *dynamic* members on Tansu, whose static membership
hangs a rolling restart (static members never expire there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Settings:
    name: str
    members: int = 3  # group members (pods)
    static: bool = True  # sidecars as static members (see the module docstring)
    partitions: int = 6
    rate: float = 300.0  # records/s produced, spread evenly over the partitions
    batch: int = 100  # records per handler call (the app's max in flight; the plain consumer's consume())
    # Extra environment of every sidecar (KAFKA_* and SIDECAR_*), on top of the sidecar's defaults.
    sidecar_env: Mapping[str, str] = field(default_factory=dict)
    session_ms: int = 10000  # the sidecars' session: asked by classic members, set on the broker for KIP-848
    heartbeat_ms: int = 3000
    baseline_session_ms: int = 45000  # librdkafka's default
    baseline_heartbeat_ms: int = 3000  # librdkafka's default
    max_poll_ms: int = 300000  # librdkafka's default, both variants, except in the slow-handler scenario
    slow_max_poll_ms: int = 45000  # the slow-handler scenario (librdkafka wants it >= the session timeout)
    slow_handler_s: float = 50.0  # per batch while the handler is slow: longer than slow_max_poll_ms
    slow_window_s: float = 120.0  # how long the handler stays slow
    slow_app_window_s: float = 120.0  # slow-app: how long the one app stays slow
    before_s: float = 10.0  # steady traffic before the first event
    after_s: float = 20.0  # traffic after the last event
    gap_s: float = 2.0  # pause between the steps of a rolling restart, after the member is ready
    down_s: float = 2.0  # how long a killed process stays down before it is started again
    ready_timeout_s: float = 150.0
    settle_timeout_s: float = 180.0
    quiet_s: float = 3.0  # no rebalance for this long (and every partition owned) = settled
    drain_timeout_s: float = 240.0  # after the producer stops, for every record to arrive
    workers: int = 1  # app processes (Consume streams) beside each sidecar
    busy_s: float = 2.0  # app kill: the killed app is inside a batch this slow (records in flight)
    # Share groups: the group's lock and delivery limit (set before its first member joins).
    share_lock_ms: int = 30000  # Kafka's default
    # Kafka's default; the sidecar gives up at SIDECAR_MAX_DELIVERY_ATTEMPTS (5 too) if lower. A record
    # given up is archived, never finished: the run counts it lost.
    share_delivery_limit: int = 5
    # The scale-out scenario: scale_workers app workers on scale_partitions partitions.
    scale_partitions: int = 6
    scale_workers: int = 12  # in all, spread evenly over the members
    scale_rate: float = 600.0  # records/s: more than even twelve workers handle, so each is kept busy
    scale_record_ms: float = 30.0  # handler time per record while scaling out (about 33 records/s each)
    scale_batch: int = 10  # records a worker holds at most (its max in flight)
    scale_window_s: float = 60.0  # how long the handlers are that slow (the measured window)

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


FULL = Settings(name="full", sidecar_env={"SIDECAR_DRAIN_TIMEOUT_MS": "10000"})

CI = Settings(
    name="ci",
    members=2,
    partitions=4,
    rate=100.0,
    batch=50,
    sidecar_env={
        "SIDECAR_REVOKE_GRACE_MS": "3000",  # must stay below max.poll.interval.ms (6000 when slow)
        "SIDECAR_DRAIN_TIMEOUT_MS": "3000",
    },
    session_ms=6000,
    heartbeat_ms=1000,
    baseline_session_ms=6000,
    baseline_heartbeat_ms=1000,
    slow_max_poll_ms=6000,
    slow_handler_s=8.0,
    slow_window_s=9.0,
    slow_app_window_s=20.0,  # long enough for a share pod's held partitions to move (about 10 s)
    before_s=2.0,
    after_s=3.0,
    gap_s=0.5,
    down_s=1.0,
    ready_timeout_s=40.0,
    settle_timeout_s=45.0,
    quiet_s=1.5,
    drain_timeout_s=45.0,
    busy_s=1.5,
    scale_rate=300.0,
    scale_record_ms=60.0,  # ~16 records/s per worker: 6 busy workers ~100/s, 12 ~200/s
    scale_window_s=12.0,
)
