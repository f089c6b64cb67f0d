"""An app that crashes with many streams open costs each record one delivery attempt, never more.

The app (tests/stream_crowd.py) opens many streams over a few connections, takes records on all of
them without acking, and is SIGKILLed. Its streams end one after another on the sidecar's side; the
records they return must not be charged again by being handed to another stream of the same dead app
before that stream's end is seen. Two crashes, and an attempt limit of 3: a record charged twice in
either crash runs out of attempts and shows as parked or dead-lettered. Runs on Tansu: this is the
sidecar's bookkeeping, not the broker's.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from e2e_support import seen, wait_for
from kafka_helpers import AppFactory, SidecarFactory, TopicFactory

from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import committed_offsets, produce
from sidecar.ops.metrics import scrape as metrics

pytestmark = pytest.mark.integration

CROWD = Path(__file__).parent / "stream_crowd.py"
RECORDS = 4_000


def _held(path: Path, want: int) -> bool:
    return len(seen(path)) >= want


def _dead_letters(bootstrap: str, topic: str, group: str) -> int:
    """How many records the dead-letter topic holds (read to its end, bounded)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    count, quiet = 0, 0
    try:
        while quiet < 3:
            batch = consumer.consume(500, timeout=1.0)
            count += sum(1 for m in batch if m.error() is None)
            quiet = 0 if batch else quiet + 1
    finally:
        consumer.close()
    return count


@pytest.mark.parametrize(
    ("ordering", "dead_letter", "streams", "channels"),
    [("unordered", False, 1000, 10), ("partition", True, 200, 200)],
    ids=["unordered-park-1000-streams", "partition-dlq-200-connections"],
)
def test_many_streams_killed_at_once_cost_one_attempt_per_crash(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
    ordering: str,
    dead_letter: bool,
    streams: int,
    channels: int,
) -> None:
    topic = new_topic(8)
    dlq = new_topic(1, prefix="dlq") if dead_letter else ""
    report = produce(broker.bootstrap, topic, RECORDS)
    env = {
        "SIDECAR_ORDERING": ordering,
        # Two crashes may charge a record twice; a third charge gives it up (parked or dead-lettered).
        "SIDECAR_MAX_DELIVERY_ATTEMPTS": "3",
        "SIDECAR_COMMIT_INTERVAL_MS": "200",
        "SIDECAR_DLQ_TOPIC": dlq or None,
    }
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env=env)
    # Unordered: every stream holds records. Partition order: a stream holds a partition's lane, so
    # one record of credit each spreads the eight lanes over eight streams.
    credit = 10 if ordering == "unordered" else 1
    crowd = ["--streams", str(streams), "--channels", str(channels), "--credit", str(credit)]

    # Two crashes in a row: each app holds what it is given, and is killed once it has it.
    outs = [tmp_path / "crash-1.txt", tmp_path / "crash-2.txt"]
    want = 400 if ordering == "unordered" else 8
    for n, out in enumerate(outs, 1):
        app = app_factory(CROWD, sidecar.grpc_address, str(out), *crowd, name=f"crowd-{n}")
        held = partial(_held, out, want)
        wait_for(f"{want} records held by crowd {n}", held, timeout=30)
        app.kill()

    final = tmp_path / "final.txt"
    app_factory(CROWD, sidecar.grpc_address, str(final), *crowd, "--ack", name="crowd-final")

    def given_up() -> float:
        m = metrics(sidecar.http_address)
        return m["kafka_sidecar_records_parked"] + m["kafka_sidecar_records_dead_lettered_total"]

    def settled() -> bool:
        if given_up():
            return True
        committed = committed_offsets(broker.bootstrap, group_id, topic, 8)
        return all(committed.get(p) == o for p, o in report.expected_commits.items())

    wait_for("all committed (or a record given up)", settled, timeout=90)
    assert given_up() == 0, "a record was charged more than once per crash and given up"
    if dead_letter:
        assert _dead_letters(broker.bootstrap, dlq, f"{group_id}-dlq") == 0

    first, second, last = (seen(out) for out in (*outs, final))
    assert {(p, o) for p, o, _ in first + second + last} >= set(report.records)
    # Each crash charges exactly one attempt: what one app saw, the next sees one attempt later.
    for before, after in ((first, second), (second, last)):
        seen_at = {(p, o): a for p, o, a in before}
        wrong = [
            (p, o, seen_at[(p, o)], a) for p, o, a in after if (p, o) in seen_at and a != seen_at[(p, o)] + 1
        ]
        assert not wrong, f"not charged once (partition, offset, attempt before, after): {wrong[:10]}"
    assert max(a for _, _, a in first) == 1
    assert max(a for _, _, a in last) <= 3
