"""The side-by-side tables and the JSON report of a harness run.

``table``: the group's troubles (rebalances, evictions, stalls, lag, lost, duplicates). ``work_table``:
the work (throughput during the events, how many app workers had records and how many each, the
redelivery of what a killed app had in hand, the highest delivery attempt seen, and for a share group
what was accepted). A cell is "n/a" where the scenario means nothing for that variant (it was not run:
see ``Scenario.variants``), and "-" where the variant was left out of this run.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.scenarios.scenarios import BY_NAME
from bench.scenarios.settings import Settings

COLUMNS = (
    ("rebalances", "rebalances"),
    ("evictions", "evictions"),
    ("longest_stall_s", "longest stall s"),
    ("peak_lag", "peak lag"),
    ("lost", "lost"),
    ("duplicates", "duplicates"),
)


#: Variants in the order the cells show them, and their short names in the header.
ORDER = (
    ("sidecar", "sidecar"),
    ("sidecar-kip848", "kip848"),
    ("baseline", "baseline"),
    ("sidecar-share", "share"),
)


def _spread(counts: list[int] | None) -> str:
    """Records per worker as ``min-max``, or ``n`` when only one worker."""
    if not counts:
        return "-"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def _redelivery(f: dict[str, Any]) -> str:
    """``seconds (attempts)`` for a kill's in-hand records, "none" when none came back."""
    if "in_hand_at_kill" not in f:
        return "n/a"
    if f["redelivery_s"] is None:
        return f"none of {f['in_hand_at_kill']}"
    attempts = ",".join(str(a) for a in f["redelivered_attempts"])
    return f"{f['redelivery_s']} (#{attempts})"


#: The work_table's columns: (title, how a run's figures show in it).
WORK_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("throughput /s", lambda f: f.get("throughput_rps", "-")),
    ("workers with records", lambda f: f"{f.get('workers_with_records', '-')}/{f.get('workers', '-')}"),
    ("records per worker", lambda f: _spread(f.get("records_per_worker"))),
    ("redelivery after kill s", _redelivery),
    ("max attempt", lambda f: f.get("max_attempt", "-")),
    ("accepted", lambda f: f.get("share_accepted", "n/a")),
)


def _cell(scenario: str, by_variant: dict[str, dict[str, Any]], show: Any, variants: list[str]) -> str:
    applies = BY_NAME[scenario].variants if scenario in BY_NAME else tuple(by_variant)
    cells = []
    for v in variants:
        if v in by_variant:
            cells.append(str(show(by_variant[v]["figures"])))
        else:
            cells.append("-" if v in applies else "n/a")
    return " / ".join(cells)


def _render(results: dict[str, dict[str, dict[str, Any]]], columns: tuple[tuple[str, Any], ...]) -> str:
    ran = {v for by_variant in results.values() for v in by_variant}
    variants = [v for v, _ in ORDER if v in ran]
    names = " / ".join(short for v, short in ORDER if v in ran)
    header = [f"scenario ({names})", *(title for title, _ in columns)]
    rows = [
        [name, *(_cell(name, by_variant, show, variants) for _, show in columns)]
        for name, by_variant in results.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per scenario; each cell is ``sidecar / kip848 / baseline / share``, for the variants that
    ran."""
    return _render(results, tuple((title, _figure(key)) for key, title in COLUMNS))


def work_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The work done: one row per scenario, the same cells as ``table``."""
    return _render(results, WORK_COLUMNS)


def _figure(key: str) -> Any:
    return lambda f: f[key]


def write_json(
    path: Path, settings: Settings, results: dict[str, dict[str, dict[str, Any]]], plots: dict[str, str]
) -> None:
    """report.json: settings, and per scenario and variant the figures, events and notes (the plotted
    series go to ``series.json`` in each run's directory)."""
    out: dict[str, Any] = {"settings": {**asdict(settings), "sidecar_env": dict(settings.sidecar_env)}}
    scenarios: dict[str, Any] = {}
    for name, by_variant in results.items():
        entry: dict[str, Any] = {"plot": plots.get(name)}
        for variant, result in by_variant.items():
            entry[variant] = {k: v for k, v in result.items() if k != "series"}
            (Path(result["workdir"]) / "series.json").write_text(json.dumps(result["series"]))
        scenarios[name] = entry
    out["scenarios"] = scenarios
    path.write_text(json.dumps(out, indent=2))
