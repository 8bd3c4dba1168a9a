"""F3: forget metric against utility across the gamma grid (BLUR, weighted sum, reversed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.report.fig_gamma import Point, by_method
from bilevel_unlearning.report.figures import (
    metric_at,
    metric_over_seeds,
    new_figure,
    save_figure,
    shared_legend,
)
from bilevel_unlearning.report.style import REFERENCE_COLOUR, display
from bilevel_unlearning.runs import seed_rows

FORGET, UTILITY = "knowmem_forget", "knowmem_retain"


def plot_tradeoff(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    benchmark: str,
    epoch: int,
    points: Sequence[Point],
    colours: Mapping[str, str],
    out: Path,
    seeds: Sequence[int | None] = (None,),
) -> list[str]:
    """One curve per method through its gamma points (labelled); lower right is better; with
    several seeds through the means, with error bars of one standard deviation."""
    figure, (ax,) = new_figure(1, height=2.4)
    for method, grid in by_method(points).items():
        forget = [
            metric_over_seeds(results, benchmark, seed_rows(run, seeds), epoch, FORGET)
            for _, run in grid
        ]
        utility = [
            metric_over_seeds(results, benchmark, seed_rows(run, seeds), epoch, UTILITY)
            for _, run in grid
        ]
        xs, ys = [m for m, _ in forget], [m for m, _ in utility]
        ax.plot(xs, ys, marker="o", label=display(method), color=colours[method])
        if len(seeds) > 1:
            xerr, yerr = [sd for _, sd in forget], [sd for _, sd in utility]
            ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", color=colours[method], lw=0.6)
        for (gamma, _), x, y in zip(grid, xs, ys, strict=True):
            ax.annotate(f"{gamma:g}", (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points")
    for reference, marker in (("target", "s"), ("retrain", "*")):
        x = metric_at(results, benchmark, reference, 0, FORGET)
        y = metric_at(results, benchmark, reference, 0, UTILITY)
        ax.scatter(
            [x], [y], marker=marker, color=REFERENCE_COLOUR, label=display(reference), zorder=3
        )
    ax.set_xlabel("KnowMem on D_f (forget, lower is better)")
    ax.set_ylabel("KnowMem on D_r (utility)")
    labels = shared_legend(figure, [ax])
    save_figure(figure, out)
    return labels
