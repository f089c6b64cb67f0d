"""Reachability: one line while no broker answers, a reminder now and then, one when contact is back."""

from __future__ import annotations

import logging

import pytest

from sidecar.kafka.reachability import LOG_EVERY_S, Reachability, cause_of

REFUSED = (
    "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused "
    "(after 0ms in state CONNECT)"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cause_is_the_reason_without_the_broker_and_timing() -> None:
    assert cause_of(REFUSED) == "Connection refused"
    resolve = "kafka-0:9092/bootstrap: Failed to resolve 'kafka-0:9092': Name or service not known"
    assert cause_of(resolve) == "Failed to resolve 'kafka-0:9092': Name or service not known"


def test_an_outage_is_one_line_then_one_every_interval_then_one_when_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    reach = Reachability("127.0.0.1:1", clock)
    caplog.set_level(logging.INFO, "sidecar.kafka.reachability")
    reach.failed(REFUSED)
    reach.all_down("1/1 brokers are down")
    for _ in range(200):  # twenty a second, for ten seconds
        clock.now += 0.05
        reach.failed(REFUSED)
    assert [r.getMessage() for r in caplog.records] == [
        "cannot reach brokers 127.0.0.1:1: Connection refused "
        "(trying again; said again every 30 s while it lasts)"
    ]
    assert reach.problem() == "cannot reach brokers 127.0.0.1:1 for 10 s: Connection refused"
    for _ in range(500):
        clock.now += 0.05
        reach.failed(REFUSED)
    reminders = [r.getMessage() for r in caplog.records[1:]]
    assert len(reminders) == int(35 // LOG_EVERY_S)
    assert reminders[0].startswith("cannot reach brokers 127.0.0.1:1 for 30 s: Connection refused (")
    reach.contact()
    assert caplog.records[-1].getMessage() == "brokers 127.0.0.1:1 reachable again after 35.0 s"
    assert reach.problem() is None


def test_one_broker_failing_while_others_answer_is_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    reach = Reachability("a:9092,b:9092", clock)
    caplog.set_level(logging.INFO, "sidecar.kafka.reachability")
    for _ in range(100):
        clock.now += 1
        reach.failed("b:9092/2: Connect to ipv4#10.0.0.2:9092 failed: Connection refused")
    assert reach.problem() is None
    lines = [r.getMessage() for r in caplog.records]
    assert 3 <= len(lines) <= 100 // LOG_EVERY_S + 1
    assert "others answer" in lines[0]


def test_all_down_without_a_failed_connect_names_what_librdkafka_said() -> None:
    reach = Reachability("k:9092", Clock())
    reach.all_down("1/1 brokers are down")
    assert reach.problem() == "cannot reach brokers k:9092 for 0 s: 1/1 brokers are down"


def test_a_refusal_is_one_line_the_reason_and_ends_when_let_in(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    reach = Reachability("k:9093", clock)
    caplog.set_level(logging.INFO, "sidecar.kafka.reachability")
    why = "Broker: Topic authorization failed (grant the sidecar's principal READ on the topic)"
    for _ in range(100):
        clock.now += 0.1
        reach.refused(why)
    assert reach.problem() == f"Kafka refuses the sidecar: {why}"
    assert [r.getMessage() for r in caplog.records] == [
        f"Kafka refuses the sidecar: {why} (trying again; said again every 30 s while it lasts)"
    ]
    reach.contact(admitted=False)  # an empty assignment: the group let it in, the topic did not
    assert reach.problem() is not None
    reach.refused("SASL authentication error: bad (check ...)")  # another reason: said at once
    assert caplog.records[-1].getMessage().startswith("Kafka refuses the sidecar: SASL authentication error")
    reach.contact()
    assert reach.problem() is None
    assert caplog.records[-1].getMessage() == "Kafka accepts the sidecar now (it refused it 101 times)"
