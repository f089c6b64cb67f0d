"""The scenario harness: its arithmetic (unit tests) and its short CI run on the session's Apache Kafka.

The CI run is the harness itself with the ``ci`` parameter set (2 members, 6 s session timeouts, a few
seconds of traffic per phase), the sidecars static and under both group protocols (classic and
KIP-848): an app rolling restart and a sidecar rolling restart must cause no rebalance and lose
nothing, and a handler slower than max.poll.interval.ms must get plain consumers evicted and the
sidecars not. The share-group sidecar (``sidecar-share``) runs where it means something: an app killed
mid-batch gets its records back with a higher delivery count, a slow handler evicts nobody and its
records come back, and 12 app workers on 6 partitions all get work (the classic sidecar keeps six
busy). ``python -m bench.scenarios --full`` is the long version, on demand.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bench.scenarios.__main__ import main, run_all
from bench.scenarios.analysis import (
    GroupEvent,
    Timeline,
    count_rebalances,
    rebalance_events,
    redelivery_figures,
    summarize,
    worker_figures,
)
from bench.scenarios.handler import Handler, Receipt, read_receipts
from bench.scenarios.plot import plot_scenario
from bench.scenarios.producer import Ack
from bench.scenarios.report import table, work_table
from bench.scenarios.scenarios import BY_NAME
from bench.scenarios.settings import CI
from sidecar.devtools.brokers.apache_kafka import ApacheKafka

# -- arithmetic -----------------------------------------------------------------------------------


def test_lag_stall_lost_and_duplicates_from_observations() -> None:
    # Partition 0: a record every second at t=0..9; each arrives 0.1 s later, except that nothing
    # arrives between t=3.1 and t=8 (a stall: records 3..7 wait), when 4..7 arrive at once.
    acks = [Ack(float(i), 0, i) for i in range(10)]
    receipts = [Receipt(i + 0.1, 0, i, 1) for i in range(4)]
    receipts += [Receipt(8.0, 0, i, 1) for i in range(4, 8)] + [Receipt(8.1, 0, 8, 1)]
    receipts += [Receipt(8.0, 0, 3, 2)]  # record 3 again: a duplicate
    # Partition 1: idle until one record at t=5, never received: lost.
    acks.append(Ack(5.0, 1, 0))
    line = Timeline.build(acks, receipts)
    assert line.lost() == 2  # 0@9 and 1@0
    assert line.duplicates() == 1
    seconds, partition, since = line.longest_stall(end=20.0)
    assert (seconds, partition, since) == (15.0, 1, 5.0)  # the lost record waited until the end
    del line.acked[1]
    assert line.longest_stall(end=20.0) == (11.0, 0, 9.0)  # record 9, acked at 9.0, never arrived
    assert line.longest_stall(end=9.0) == (4.0, 0, 4.0)  # record 4, acked at 4.0, arrived at 8.0
    times, per = line.lag_series(0.0, 9.0, 1.0)
    assert times[:3] == [0.0, 1.0, 2.0]
    # At t=7: 8 records acked (0..7), 4 received (0..3) -> lag 4; at t=8.0 all of 0..7 arrived.
    assert per[0][7] == 4
    assert per[0][8] == 1


def test_rebalances_count_generations_of_running_members_once() -> None:
    def event(
        t: float, member: str, gen: int | None, *, first: bool = False, lost: bool = False
    ) -> GroupEvent:
        return GroupEvent(t, member, 1, first, gen, (), (), lost)

    events = [
        event(1, "a", 1, first=True),
        event(1, "b", 1, first=True),  # the initial join: before the group settled
        event(12, "a", 2),
        event(12, "b", 2),  # one rebalance seen by two members: counted once
        event(20, "c", 2, first=True),  # a static member coming back: its own join, nobody else's
        event(30, "a", 3, lost=True),  # evicted, then rejoined
        event(31, "b", 3),
    ]
    assert count_rebalances(events, settled_at=10) == (2, 1)
    assert count_rebalances(events[:5], settled_at=10) == (1, 0)
    # A member leaving while the run's members are stopped, after its end, is no part of it.
    assert count_rebalances(events, settled_at=10, end=25) == (1, 0)


def test_rebalance_events_are_read_from_json_log_lines_per_incarnation() -> None:
    line = json.dumps(
        {
            "event": "rebalance",
            "timestamp": "2026-01-01T00:00:05+00:00",
            "generation": 4,
            "added": ["orders[0]", "orders[12]"],
            "revoked": ["orders[3]"],
            "lost": False,
        }
    )
    events = rebalance_events("pod-0", [["plain text", line, line], [line]])
    assert [(e.incarnation, e.first) for e in events] == [(1, True), (1, False), (2, True)]
    assert events[0].added == (0, 12)
    assert events[0].revoked == (3,)
    assert events[0].generation == 4


def test_slow_handler_is_bounded_by_the_recovery_time(tmp_path: Path) -> None:
    flag = tmp_path / "slow"
    handler = Handler(tmp_path / "receipts", flag)
    assert handler.slowness(100.0) == 0.0  # no flag: fast
    flag.write_text("8 105\n")  # 8 s per batch until t=105
    assert handler.slowness(100.0) == 5.0
    assert handler.slowness(90.0) == 8.0
    assert handler.slowness(106.0) == 0.0
    flag.write_text("garbage")
    assert handler.slowness(100.0) == 0.0
    handler.handle([(0, 7, 1), (1, 3, 2)])
    handler.close()
    assert [(r.partition, r.offset, r.attempt) for r in read_receipts(tmp_path / "receipts")] == [
        (0, 7, 1),
        (1, 3, 2),
    ]


def test_handler_flags_add_work_per_record_and_the_slowest_flag_counts(tmp_path: Path) -> None:
    group, own = tmp_path / "slow", tmp_path / "own"
    handler = Handler(tmp_path / "receipts", [group, own])
    group.write_text("0 110 0.05\n")  # 50 ms per record until t=110
    assert handler.slowness(100.0, 10) == pytest.approx(0.5)
    assert handler.slowness(109.9, 10) == pytest.approx(0.1)  # bounded by the recovery time
    own.write_text("2 103\n")  # this member alone: 2 s per batch until t=103
    assert handler.slowness(100.0, 10) == 2.0
    assert handler.slowness(104.0, 10) == pytest.approx(0.5)
    own.write_text("1 2 3 4")  # not a flag
    assert handler.slowness(104.0, 10) == pytest.approx(0.5)
    handler.close()


def test_worker_figures_count_throughput_in_the_window_and_work_per_worker() -> None:
    receipts = [("w0", Receipt(float(t), 0, t, 1)) for t in range(10)]
    receipts += [("w1", Receipt(5.5, 1, 0, 1)), ("w1", Receipt(6.5, 0, 3, 2))]  # 0@3 again: work, not new
    figures = worker_figures(receipts, ["w0", "w1", "w2"], start=2.0, end=7.0)
    assert figures["throughput_rps"] == pytest.approx(6 / 5)  # 0@2..0@6 and 1@0 first seen in [2, 7)
    assert figures["records_per_worker"] == [5, 2, 0]
    assert (figures["workers"], figures["workers_with_records"]) == (3, 2)


def test_redelivery_figures_follow_the_batch_the_killed_worker_had_in_hand() -> None:
    receipts = [
        ("pod-0", Receipt(1.0, 0, 0, 1)),  # an earlier batch, acked
        ("pod-0", Receipt(2.0, 0, 1, 1)),
        ("pod-0", Receipt(2.0, 0, 2, 1)),  # the batch in hand at the kill (t=2.5)
        ("pod-1", Receipt(2.2, 1, 0, 1)),
        ("pod-1", Receipt(3.7, 0, 2, 2)),  # back, to the other pod, one delivery more
        ("pod-0", Receipt(4.0, 0, 1, 2)),
    ]
    figures = redelivery_figures(receipts, {"pod-0"}, kill_t=2.5)
    assert figures == {
        "in_hand_at_kill": 2,
        "redelivered_after_kill": 2,
        "redelivery_s": 1.2,
        "redelivered_attempts": [2],
    }
    assert redelivery_figures(receipts[:4], {"pod-0"}, 2.5)["redelivery_s"] is None


def test_report_table_and_plot_from_a_synthetic_result(tmp_path: Path) -> None:
    acks = [Ack(float(i) / 10, i % 2, i // 2) for i in range(100)]
    receipts = [Receipt(a.t + 0.05, a.partition, a.offset, 1) for a in acks]
    result = summarize(acks, receipts, [], settled_at=0.0, end=12.0)
    result.update(marks=[(2.0, "restart app pod-0")], rebalance_times=[3.0], producer_stopped_at_s=10.0)
    assert result["figures"]["lost"] == 0
    assert result["figures"]["peak_lag"] <= 2
    alone = table({"app-kill": {"sidecar": result}})
    assert alone.splitlines()[0].startswith("scenario (sidecar) ")
    assert "app-kill" in alone
    # Cells follow the variants that ran anywhere, in one order; a variant missing from a scenario is "-".
    text = table({"app-kill": {"baseline": result, "sidecar": result}, "slow-handler": {"sidecar": result}})
    assert text.splitlines()[0].startswith("scenario (sidecar / baseline) ")
    app_kill, slow = text.splitlines()[2:4]
    assert "| 0 / 0 " in app_kill
    assert "| 0 / - " in slow
    # A scenario that means nothing for a variant that ran elsewhere shows "n/a" (not a figure).
    share = dict(result)
    share["figures"] = {
        **result["figures"],
        **worker_figures([], ["pod-0", "pod-1"], 0.0, 1.0),
        **redelivery_figures(
            [("pod-0", Receipt(1.0, 0, 0, 1)), ("pod-1", Receipt(2.0, 0, 0, 2))], {"pod-0"}, 1.5
        ),
        "max_attempt": 2,
        "share_accepted": 100,
    }
    mixed = {
        "app-rolling-restart": {"sidecar": result},
        "app-kill": {"sidecar": result, "sidecar-share": share},
    }
    text = table(mixed)
    assert text.splitlines()[0].startswith("scenario (sidecar / share) ")
    assert "| 0 / n/a " in text.splitlines()[2]
    work = work_table(mixed).splitlines()
    assert "| n/a / 100" in work[3]  # accepted: a share group's figure only
    assert "0.5 (#2)" in work[3]  # redelivered 0.5 s after the kill, on its second delivery
    assert "0/2" in work[3]
    png = tmp_path / "plot.png"
    plot_scenario("synthetic", {"sidecar": result, "baseline": result}, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png.read_bytes()[16:24])
    assert width > 1000
    assert height > 600


def test_command_line_refuses_bad_input() -> None:
    with pytest.raises(SystemExit):
        main(["--only", "no-such-scenario"])
    with pytest.raises(SystemExit, match="--members 9 > 4 partitions"):
        main(["--members", "9"])
    with pytest.raises(SystemExit, match="Tansu has no share groups"):
        main(["--broker", "tansu", "--variant", "sidecar-share"])
    with pytest.raises(SystemExit, match="nothing to run"):
        main(["--only", "scale-out", "--variant", "baseline"])  # scale-out is n/a for plain consumers


# -- the short run on a real broker ----------------------------------------------------------------


SIDECARS = ["sidecar", "sidecar-kip848"]


@pytest.mark.integration
def test_ci_run_app_rolling_restart_costs_no_rebalance_and_loses_nothing(
    kafka: ApacheKafka, tmp_path: Path
) -> None:
    results = run_all(
        CI, [BY_NAME["app-rolling-restart"]], SIDECARS, tmp_path, plots=True, bootstrap=kafka.bootstrap
    )
    for variant in SIDECARS:
        figures = results["app-rolling-restart"][variant]["figures"]
        assert figures["produced"] > 0, variant
        assert figures["lost"] == 0, variant
        assert figures["rebalances"] == 0, variant
        assert figures["evictions"] == 0, variant
    report = json.loads((tmp_path / "report.json").read_text())
    entry = report["scenarios"]["app-rolling-restart"]
    assert report["settings"]["name"] == "ci"
    assert report["settings"]["static"] is True
    assert set(entry) == {"plot", *SIDECARS}
    assert [label for _, label in entry["sidecar"]["marks"]] == ["restart app pod-0", "restart app pod-1"]
    assert set(entry["sidecar"]["figures"]) >= {
        "rebalances",
        "evictions",
        "longest_stall_s",
        "peak_lag",
        "lost",
        "duplicates",
    }
    assert Path(entry["plot"]).read_bytes()[:4] == b"\x89PNG"
    run_dir = Path(entry["sidecar-kip848"]["workdir"])
    assert (run_dir / "receipts.csv").exists()
    assert (run_dir / "series.json").exists()
    assert "group protocol consumer" in (run_dir / "pod-0.sidecar.log").read_text()
    assert "group protocol classic" in (Path(entry["sidecar"]["workdir"]) / "pod-0.sidecar.log").read_text()


@pytest.mark.integration
def test_ci_run_static_sidecar_rolling_restart_costs_no_rebalance(kafka: ApacheKafka, tmp_path: Path) -> None:
    results = run_all(
        CI, [BY_NAME["sidecar-rolling-restart"]], SIDECARS, tmp_path, plots=False, bootstrap=kafka.bootstrap
    )
    for variant in SIDECARS:
        figures = results["sidecar-rolling-restart"][variant]["figures"]
        assert figures["produced"] > 0, variant
        assert figures["lost"] == 0, variant
        assert figures["rebalances"] == 0, variant


@pytest.mark.integration
def test_ci_run_slow_handler_evicts_plain_consumers_and_not_the_sidecar(
    kafka: ApacheKafka, tmp_path: Path
) -> None:
    variants = [*SIDECARS, "baseline"]
    results = run_all(
        CI, [BY_NAME["slow-handler"]], variants, tmp_path, plots=False, bootstrap=kafka.bootstrap
    )
    figures = {v: results["slow-handler"][v]["figures"] for v in variants}
    for variant in SIDECARS:
        assert figures[variant]["evictions"] == 0, variant
        assert figures[variant]["rebalances"] == 0, variant
    assert figures["baseline"]["evictions"] >= 1
    assert figures["baseline"]["rebalances"] >= 1
    for variant in variants:
        assert figures[variant]["lost"] == 0, variant
        assert figures[variant]["produced"] > 0, variant


# -- the share-group variant ----------------------------------------------------------------------


@pytest.mark.integration
def test_ci_run_app_kill_share_redelivers_what_the_app_had_with_a_higher_delivery_count(
    kafka: ApacheKafka, tmp_path: Path
) -> None:
    variants = ["sidecar", "sidecar-share"]
    results = run_all(CI, [BY_NAME["app-kill"]], variants, tmp_path, plots=False, bootstrap=kafka.bootstrap)
    for variant in variants:
        figures = results["app-kill"][variant]["figures"]
        assert figures["produced"] > 0, variant
        assert figures["lost"] == 0, variant
        assert figures["rebalances"] == 0, variant
        assert figures["in_hand_at_kill"] >= 1, variant  # killed inside a batch
        assert figures["redelivered_after_kill"] == figures["in_hand_at_kill"], variant
        assert figures["redelivery_s"] is not None, variant
        assert min(figures["redelivered_attempts"]) >= 2, variant
    share = results["app-kill"]["sidecar-share"]["figures"]
    # What the share group finished: every record produced, ACCEPTed once, none archived.
    assert share["share_accepted"] == share["produced"]
    assert share["share_rejected"] == 0
    log = (Path(results["app-kill"]["sidecar-share"]["workdir"]) / "pod-0.sidecar.log").read_text()
    assert "share group member" in log


@pytest.mark.integration
def test_ci_run_slow_handler_share_evicts_nobody_and_redelivers_the_slow_records(
    kafka: ApacheKafka, tmp_path: Path
) -> None:
    results = run_all(
        CI, [BY_NAME["slow-handler"]], ["sidecar-share"], tmp_path, plots=False, bootstrap=kafka.bootstrap
    )
    figures = results["slow-handler"]["sidecar-share"]["figures"]
    assert figures["produced"] > 0
    assert figures["lost"] == 0
    assert figures["evictions"] == 0
    assert figures["rebalances"] == 0
    # An 8 s handler outlasts the hold (6 s max.poll.interval.ms less a margin): its records are
    # released and delivered again, the broker counting one delivery more.
    assert figures["max_attempt"] >= 2
    assert figures["duplicates"] >= 1
    assert figures["share_accepted"] == figures["produced"]
    assert figures["share_rejected"] == 0


@pytest.mark.integration
def test_ci_run_scale_out_share_gives_every_one_of_12_workers_work_on_6_partitions(
    kafka: ApacheKafka, tmp_path: Path
) -> None:
    variants = ["sidecar", "sidecar-share"]
    results = run_all(CI, [BY_NAME["scale-out"]], variants, tmp_path, plots=True, bootstrap=kafka.bootstrap)
    classic, share = (results["scale-out"][v]["figures"] for v in variants)
    for figures in (classic, share):
        assert figures["lost"] == 0
        assert figures["workers"] == 12
        assert figures["rebalances"] == 0
    # Share: all 12 workers had work, each a fair share of it.
    per = share["records_per_worker"]
    assert share["workers_with_records"] == 12, per
    assert min(per) >= 0.5 * sum(per) / len(per), per
    assert share["share_accepted"] == share["produced"]
    # Classic (partition order): six partitions keep at most six workers busy at a time.
    top6 = sum(sorted(classic["records_per_worker"], reverse=True)[:6])
    assert top6 >= 0.9 * sum(classic["records_per_worker"]), classic["records_per_worker"]
    assert share["throughput_rps"] >= 1.5 * classic["throughput_rps"], (share, classic)


@pytest.mark.integration
def test_ci_run_one_slow_app_in_a_share_group_holds_its_records_only_for_a_while(
    kafka: ApacheKafka, tmp_path: Path
) -> None:
    results = run_all(
        CI, [BY_NAME["slow-app"]], ["sidecar-share"], tmp_path, plots=False, bootstrap=kafka.bootstrap
    )
    figures = results["slow-app"]["sidecar-share"]["figures"]
    assert figures["produced"] > 0
    assert figures["lost"] == 0
    assert (figures["evictions"], figures["rebalances"]) == (0, 0)
    # The slow app's records come back at the hold's end and its pod's share consumers, wanted by no
    # app, leave the group: its partitions go to the other pod long before the app is fast again (a
    # consumer group would keep them waiting the whole window).
    assert figures["longest_stall_s"] < CI.slow_app_window_s - 4, figures["longest_stall_s"]
    assert figures["max_attempt"] >= 2
    assert figures["share_accepted"] == figures["produced"]
    assert figures["share_rejected"] == 0
