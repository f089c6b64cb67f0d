"""One PNG per scenario: lag (top) and delivery rate (bottom) over time, sidecars beside the baseline.

The variants share their y axes, so the picture compares like with like: a sidecar line lying
flat along the bottom of a panel whose scale the baseline set is the finding, not a plotting slip.
Each partition's lag is a band of its own colour, stacked, so every partition shows and the top of
the stack is the total (drawn over it in black). Scripted events are dashed purple lines labelled
across the top; rebalances are orange lines on the rate panel. The legends sit under the panels,
one row each for lag and rate, so no panel hides anything behind one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scenarios.report import ORDER

FONT = 11
EVENT_FONT = 9


def plot_scenario(title: str, results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v, _ in ORDER if v in results]
    plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT, "legend.fontsize": FONT - 1})
    fig, axes = plt.subplots(
        2, len(variants), figsize=(7.5 * len(variants), 8.5), sharex="col", sharey="row", squeeze=False
    )
    colours = [f"C{i}" for i in range(10)]  # the default cycle: tab10
    for col, variant in enumerate(variants):
        result = results[variant]
        series, figures = result["series"], result["figures"]
        lag_ax, rate_ax = axes[0][col], axes[1][col]
        by_partition = sorted(series["lag_by_partition"].items(), key=lambda kv: int(kv[0]))
        if by_partition:
            lag_ax.stackplot(
                series["t"],
                [lag for _, lag in by_partition],
                labels=[f"partition {p}" for p, _ in by_partition],
                colors=[colours[int(p) % len(colours)] for p, _ in by_partition],
                alpha=0.75,
                lw=0,
            )
        lag_ax.plot(series["t"], series["lag"], color="black", lw=1.4, label="total lag")
        lag_ax.set_ylabel("lag (records)")
        lag_ax.set_title(
            f"{variant}: {figures['rebalances']} rebalances, {figures['evictions']} evictions, "
            f"{figures['lost']} lost, {figures['duplicates']} duplicates\n"
            f"peak lag {figures['peak_lag']}, longest stall {figures['longest_stall_s']} s" + _work(figures),
        )
        rate_ax.plot(series["rate_t"], series["rate"], color="tab:blue", lw=1.6, label="new records/s")
        rate_ax.plot(series["rate_t"], series["duplicates"], color="tab:red", lw=1.4, label="duplicates/s")
        rate_ax.set_ylabel("delivered (records/s)")
        rate_ax.set_xlabel("seconds since the group settled")
        for i, t in enumerate(result["rebalance_times"]):
            rate_ax.axvline(t, color="tab:orange", lw=1.4, alpha=0.8, label="rebalance" if i == 0 else None)
        for ax in (lag_ax, rate_ax):
            ax.axvline(result["producer_stopped_at_s"], color="grey", ls=":", lw=1.2)
            for t, _ in result["marks"]:
                ax.axvline(t, color="tab:purple", ls="--", lw=1.1)
            ax.grid(alpha=0.3)
        _label_events(lag_ax, result, series)
    _legend_below(fig, axes)
    fig.suptitle(title, fontsize=FONT + 2)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _work(figures: dict[str, Any]) -> str:
    """The title's work line: throughput during the events, and how many app workers had records."""
    if "throughput_rps" not in figures:
        return ""
    return (
        f"\n{figures['throughput_rps']} records/s during the events, "
        f"{figures['workers_with_records']}/{figures['workers']} app workers with records"
    )


def _label_events(ax: Any, result: dict[str, Any], series: dict[str, Any]) -> None:
    """The scripted events' names along their lines, stepped down where they would overlap."""
    span = max(series["t"][-1] if series["t"] else 1.0, 1.0)
    previous, height = float("-inf"), 0.98
    events = [*result["marks"], (result["producer_stopped_at_s"], "producer stops")]
    for t, label in sorted(events):
        height = 0.98 if t - previous > span * 0.05 or height < 0.5 else height - 0.3
        previous = t
        ax.text(
            t,
            height,
            f" {label}",
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="right",
            fontsize=EVENT_FONT,
            color="grey" if label == "producer stops" else "tab:purple",
            zorder=10,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
        )


def _legend_below(fig: Any, axes: Any) -> None:
    """One legend row for the lag panels and one for the rate panels, centred under the figure."""
    for row, anchor in ((0, 0.035), (1, 0.0)):
        handles: dict[str, Any] = {}
        for ax in axes[row]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        if handles:
            fig.legend(
                list(handles.values()),
                list(handles),
                loc="lower center",
                bbox_to_anchor=(0.5, anchor),
                ncol=len(handles),
                frameon=False,
            )
