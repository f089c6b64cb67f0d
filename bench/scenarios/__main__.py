"""``python -m bench.scenarios``: run the scenario harness (or ``practical``: the guided practical).

Examples::

    python -m bench.scenarios                       # the short (CI) parameter set, every scenario
    python -m bench.scenarios --full --out /tmp/sc  # production defaults, on Apache Kafka; tens of minutes
    python -m bench.scenarios --only slow-handler --variant baseline --broker tansu
    python -m bench.scenarios practical --step 4

The broker is a local Apache Kafka 4.x by default (``--broker tansu`` for the quick one, or
``--bootstrap`` of a cluster you have). Variants: the sidecar as a classic member, as a KIP-848 member
(``sidecar-kip848``; not on Tansu, which lacks KIP-848), the plain-consumer baseline, and the sidecar
as a share-group member (``sidecar-share``, KIP-932: Apache Kafka 4.x only) in the scenarios where a
share group has something to show (app kill, slow handler, scale-out); the table says "n/a" elsewhere.

Prints progress on stderr, the side-by-side table on stdout, and writes report.json and one PNG per
scenario to --out (default: a fresh temporary directory). Exit status 1 if a run failed or any record
was lost.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import exit_on_sigterm
from bench.scenarios.brokers import BROKERS, start_broker
from bench.scenarios.plot import plot_scenario
from bench.scenarios.report import table, work_table, write_json
from bench.scenarios.runner import VARIANTS, RunFailed, run_variant, say
from bench.scenarios.scenarios import BY_NAME, SCENARIOS, Scenario
from bench.scenarios.settings import CI, FULL, Settings


def run_all(
    settings: Settings,
    scenarios: Sequence[Scenario],
    variants: Sequence[str],
    out_dir: Path,
    *,
    plots: bool = True,
    bootstrap: str | None = None,
    broker: str = "kafka",
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every scenario x variant on one broker (a local one of kind ``broker`` unless ``bootstrap`` names
    one); writes report.json (and the PNGs) to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    pictures: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if bootstrap is None:
            bootstrap, label = start_broker(broker, stack, out_dir, settings)
            say(f"broker: {label}; results in {out_dir}")
        else:
            say(f"broker {bootstrap}; results in {out_dir}")
        for scenario in scenarios:
            applicable = [v for v in variants if v in scenario.variants]  # the others: "n/a"
            if not applicable:
                continue
            by_variant = results.setdefault(scenario.name, {})
            for variant in applicable:
                by_variant[variant] = run_variant(scenario, variant, settings, bootstrap, out_dir)
            if plots:
                path = out_dir / f"{scenario.name}.png"
                membership = "static" if settings.static else "dynamic"
                title = f"{scenario.title} ({settings.name} settings, {membership} sidecars)"
                plot_scenario(title, by_variant, path)
                pictures[scenario.name] = str(path)
            write_json(out_dir / "report.json", settings, results, pictures)
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scenarios",
        description="The sidecar vs plain consumers through restarts, kills and slow handlers.",
    )
    parser.add_argument("command", nargs="?", choices=("run", "practical"), default="run")
    parser.add_argument("--full", action="store_true", help="production defaults (minutes) instead of CI's")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="run only this scenario")
    parser.add_argument(
        "--variant", action="append", choices=VARIANTS, help="run only this variant (default: every one)"
    )
    parser.add_argument(
        "--broker", choices=BROKERS, default="kafka", help="the local broker (default: kafka)"
    )
    membership = parser.add_mutually_exclusive_group()
    membership.add_argument(
        "--static", action="store_true", default=None, help="static sidecars (the default on Apache Kafka)"
    )
    membership.add_argument(
        "--dynamic", action="store_false", dest="static", help="dynamic sidecars (the default on Tansu)"
    )
    parser.add_argument("--bootstrap", help="use this Kafka cluster instead of a local broker")
    parser.add_argument("--members", type=int, help="group members (default: 2 for CI, 3 for --full)")
    parser.add_argument("--rate", type=float, help="records/s produced")
    parser.add_argument("--out", type=Path, help="output directory (default: a new temporary directory)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--step", type=int, choices=range(1, 6), help="practical: run only this step")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    exit_on_sigterm()
    if args.command == "practical":
        from bench.scenarios.practical import run_practical

        out = args.out or Path(tempfile.mkdtemp(prefix="kafka-sidecar-practical-"))
        return run_practical(out, args.step, args.broker)
    settings = FULL if args.full else CI
    if args.members is not None:
        if args.members < 1:
            raise SystemExit("--members must be >= 1")
        settings = settings.with_overrides(members=args.members)
    tansu = args.broker == "tansu" and args.bootstrap is None
    static = args.static if args.static is not None else not tansu
    settings = settings.with_overrides(static=static)
    if args.rate is not None:
        if args.rate <= 0:
            raise SystemExit("--rate must be > 0")
        settings = settings.with_overrides(rate=args.rate)
    if settings.members > settings.partitions:
        raise SystemExit(f"--members {settings.members} > {settings.partitions} partitions: some would idle")
    scenarios = [BY_NAME[n] for n in args.only] if args.only else list(SCENARIOS)
    apache_only = ("sidecar-kip848", "sidecar-share")
    variants = tuple(args.variant or (v for v in VARIANTS if not (tansu and v in apache_only)))
    if tansu and "sidecar-kip848" in variants:
        raise SystemExit("--variant sidecar-kip848 needs Apache Kafka: Tansu has no KIP-848 groups")
    if tansu and "sidecar-share" in variants:
        raise SystemExit("--variant sidecar-share needs Apache Kafka: Tansu has no share groups")
    if not any(v in scenario.variants for scenario in scenarios for v in variants):
        names = ", ".join(s.name for s in scenarios)
        raise SystemExit(f"nothing to run: {', '.join(variants)} means nothing in {names} (n/a)")
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="kafka-sidecar-scenarios-"))
    try:
        results = run_all(
            settings,
            scenarios,
            variants,
            out_dir,
            plots=not args.no_plots,
            bootstrap=args.bootstrap,
            broker=args.broker,
        )
    except RunFailed as exc:
        say(f"FAILED: {exc}")
        return 1
    print(table(results))
    print()
    print(work_table(results))
    print(f"\nreport: {out_dir / 'report.json'}")
    lost = {(s, v) for s, by in results.items() for v, r in by.items() if r["figures"]["lost"]}
    notes = [f"{s}/{v}: {n}" for s, by in results.items() for v, r in by.items() for n in r["notes"]]
    for note in notes:
        print(f"note: {note}")
    if lost:
        print(f"LOST RECORDS in {sorted(lost)}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
