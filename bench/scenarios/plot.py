"""One PNG per scenario: lag (top) and delivery rate (bottom) over time, sidecars beside the baseline.

The variants share their y axes, so the picture compares like with like: a sidecar line lying
flat along the bottom of a panel whose scale the baseline set is the finding, not a plotting slip.
Scripted events are dashed purple lines with labels; rebalances are orange ticks on the rate panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scenarios.report import ORDER


def plot_scenario(title: str, results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v, _ in ORDER if v in results]
    fig, axes = plt.subplots(
        2, len(variants), figsize=(7.0 * len(variants), 7.5), sharex="col", sharey="row", squeeze=False
    )
    for col, variant in enumerate(variants):
        result = results[variant]
        series, figures = result["series"], result["figures"]
        lag_ax, rate_ax = axes[0][col], axes[1][col]
        for partition, lag in series["lag_by_partition"].items():
            lag_ax.plot(series["t"], lag, lw=0.7, alpha=0.55, label=f"partition {partition}")
        lag_ax.plot(series["t"], series["lag"], color="black", lw=1.8, label="total")
        lag_ax.set_ylabel("lag (records)")
        lag_ax.set_title(
            f"{variant}: {figures['rebalances']} rebalances, {figures['evictions']} evictions, "
            f"{figures['lost']} lost, {figures['duplicates']} duplicates\n"
            f"peak lag {figures['peak_lag']}, longest stall {figures['longest_stall_s']} s",
            fontsize=10,
        )
        rate_ax.plot(series["rate_t"], series["rate"], color="tab:blue", lw=1.2, label="new records/s")
        rate_ax.plot(series["rate_t"], series["duplicates"], color="tab:red", lw=1.0, label="duplicates/s")
        rate_ax.set_ylabel("delivered (records/s)")
        rate_ax.set_xlabel("seconds since the group settled")
        for i, t in enumerate(result["rebalance_times"]):
            rate_ax.axvline(t, color="tab:orange", lw=1.0, alpha=0.7, label="rebalance" if i == 0 else None)
        for ax in (lag_ax, rate_ax):
            ax.axvline(result["producer_stopped_at_s"], color="grey", ls=":", lw=1.0)
            for t, _ in result["marks"]:
                ax.axvline(t, color="tab:purple", ls="--", lw=0.9)
            ax.grid(alpha=0.25)
        span = max(series["t"][-1] if series["t"] else 1.0, 1.0)
        previous, height = float("-inf"), 0.98
        for t, label in result["marks"]:
            # Labels of events close together would print over each other: step them down.
            height = 0.98 if t - previous > span * 0.04 or height < 0.5 else height - 0.3
            previous = t
            lag_ax.text(
                t,
                height,
                f" {label}",
                transform=lag_ax.get_xaxis_transform(),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                color="tab:purple",
                zorder=10,  # above the legend box
                bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1},
            )
        lag_ax.text(
            result["producer_stopped_at_s"],
            0.98,
            " producer stops",
            transform=lag_ax.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="grey",
        )
    for ax in axes[:, -1]:  # one legend per row, outside the last panel, clear of the event labels
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
