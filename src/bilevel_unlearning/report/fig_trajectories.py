"""F4: forget and utility metrics across epochs, one line per method (epoch 0 = start model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.report.figures import (
    integer_ticks,
    metric_at,
    metric_over_seeds,
    new_figure,
    plot_with_spread,
    save_figure,
    shared_legend,
)
from bilevel_unlearning.report.style import ARROWS, REFERENCE_COLOUR, display
from bilevel_unlearning.runs import ORACLE_ROLE, START_ROLE, seed_rows

PANELS = {
    "muse": ("knowmem_forget", "knowmem_retain"),
    "tofu": ("forget_quality", "model_utility"),
    "wmdp": ("wmdp_bio_acc", "mmlu_acc"),
}


def plot_trajectories(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    benchmark: str,
    methods: Sequence[str],
    epochs: Sequence[int],
    colours: Mapping[str, str],
    out: Path,
    suffix: str = "",
    seeds: Sequence[int | None] = (None,),
    chosen: Mapping[str, int] | None = None,
) -> list[str]:
    """Each method's path from the start model (epoch 0) through its evaluated epochs, the
    oracle's level dotted; suffix: the forget split of a benchmark with one row per split;
    with several seeds the mean and a band of one standard deviation; chosen: method -> the
    epoch a selection rule picked (report.selection), ringed."""
    family = bench(benchmark).family
    panels = PANELS[family]
    figure, axes = new_figure(len(panels), height=1.8, columns=2.0)
    start = START_ROLE[family] + suffix
    for ax, name in zip(axes, panels, strict=True):
        for method in methods:
            xs = [0, *epochs]
            stats = [(metric_at(results, benchmark, start, 0, name), 0.0)]
            rows = seed_rows(method, seeds, suffix)
            stats += [metric_over_seeds(results, benchmark, rows, e, name) for e in epochs]
            plot_with_spread(ax, xs, stats, label=display(method), color=colours[method])
            if chosen and method in chosen:
                y = stats[xs.index(chosen[method])][0]
                ax.plot(
                    [chosen[method]],
                    [y],
                    marker="o",
                    markersize=9,
                    fillstyle="none",
                    color=colours[method],
                    linestyle="none",
                )
        if ORACLE_ROLE[family]:  # the level unlearning should reach (none on WMDP)
            value = metric_at(results, benchmark, ORACLE_ROLE[family] + suffix, 0, name)
            label = display(ORACLE_ROLE[family])
            ax.axhline(value, color=REFERENCE_COLOUR, linestyle=":", label=label)
        ax.set_xlabel("epoch")
        integer_ticks(ax)
        ax.set_xticks([0, *epochs])
        metric = catalog.METRICS[name]
        ax.set_title(f"{metric.label} {ARROWS[metric.direction]}")
    if chosen:  # one legend entry for the rings
        axes[0].plot([], [], marker="o", markersize=9, fillstyle="none", color=REFERENCE_COLOUR,
                     linestyle="none", label="epoch chosen by the rule")  # fmt: skip
    labels = shared_legend(figure, axes)
    save_figure(figure, out)
    return labels
