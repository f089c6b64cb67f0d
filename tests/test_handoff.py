"""The hand-off between the poll thread and the event loop, without a broker: a revoke the loop could
not take in time commits nothing, and still must not leave the partition (or the loop's epoch) behind."""

from __future__ import annotations

import asyncio
import threading
import time

from sidecar.consumer.dispatcher import Dispatcher
from sidecar.consumer.handoff import Handoff
from sidecar.consumer.pipeline import Pipeline
from sidecar.core.records import TopicPartition

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


def test_a_revoke_that_timed_out_on_a_stalled_loop_completes_once_the_loop_is_back() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        dispatcher = Dispatcher()
        pipe = Pipeline(dispatcher, commit_interval_s=1.0, revoke_grace_s=0.0)
        handoff = Handoff(loop, pipe, revoke_timeout_s=0.2)
        handoff.assigned([T0, T1], {}, 1)
        # The loop stalls (say, a long GC pause) longer than the poll thread waits for a revoke.
        loop.call_soon_threadsafe(time.sleep, 0.6)
        assert handoff.revoked([T0], 2) == {}  # nothing committed blind
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)
        assert done.wait(5)
        # The loop caught up: T0 is gone, T1 stays, and the epochs agree, so commits flow again.
        assert dispatcher.assignment == frozenset({T1})
        assert pipe.epoch == 2
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
