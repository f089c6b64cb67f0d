"""The side-by-side table and the JSON report of a harness run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

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
ORDER = (("sidecar", "sidecar"), ("sidecar-kip848", "kip848"), ("baseline", "baseline"))


def _cell(by_variant: dict[str, dict[str, Any]], key: str, variants: list[str]) -> str:
    return " / ".join(str(by_variant[v]["figures"][key]) if v in by_variant else "-" for v in variants)


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per scenario; each cell is ``sidecar / kip848 / baseline``, for the variants that ran."""
    ran = {v for by_variant in results.values() for v in by_variant}
    variants = [v for v, _ in ORDER if v in ran]
    names = " / ".join(short for v, short in ORDER if v in ran)
    header = [f"scenario ({names})", *(title for _, title in COLUMNS)]
    rows = [
        [name, *(_cell(by_variant, key, variants) for key, _ in COLUMNS)]
        for name, by_variant in results.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


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
