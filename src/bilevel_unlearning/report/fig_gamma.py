"""F2: the gamma ablation, each MUSE metric against gamma, one line per swept method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.report.figures import (
    metric_at,
    metric_over_seeds,
    new_figure,
    plot_with_spread,
    save_figure,
    shared_legend,
)
from bilevel_unlearning.report.style import ARROWS, REFERENCE_COLOUR, display
from bilevel_unlearning.report.tables import references
from bilevel_unlearning.runs import seed_rows

Point = tuple[str, float, str]  # (method, gamma, run)


def by_method(points: Sequence[Point]) -> dict[str, list[tuple[float, str]]]:
    """Sweep points grouped per method, sorted by gamma."""
    grouped: dict[str, list[tuple[float, str]]] = {}
    for method, gamma, run in points:
        grouped.setdefault(method, []).append((gamma, run))
    return {m: sorted(v) for m, v in grouped.items()}


def plot_gamma(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    benchmark: str,
    epoch: int,
    points: Sequence[Point],
    colours: Mapping[str, str],
    out: Path,
    seeds: Sequence[int | None] = (None,),
) -> list[str]:
    """Four panels (VerbMem, KnowMem forget, PrivLeak, KnowMem retain) against gamma; with
    several seeds the mean and a band of one standard deviation."""
    figure, axes = new_figure(len(catalog.MUSE_TABLE), height=1.6, columns=2.0)
    for ax, name in zip(axes, catalog.MUSE_TABLE, strict=True):
        for method, grid in by_method(points).items():
            gammas = [g for g, _ in grid]
            stats = [
                metric_over_seeds(results, benchmark, seed_rows(run, seeds), epoch, name)
                for _, run in grid
            ]
            plot_with_spread(ax, gammas, stats, label=display(method), color=colours[method])
        for reference, style in zip(references("muse"), ("--", ":"), strict=True):
            value = metric_at(results, benchmark, reference, 0, name)
            ax.axhline(value, color=REFERENCE_COLOUR, linestyle=style, label=display(reference))
        ax.set_xscale("log", base=2)
        ax.set_xlabel(r"$\gamma$")
        metric = catalog.METRICS[name]
        ax.set_title(f"{metric.label} {ARROWS[metric.direction]}")
    labels = shared_legend(figure, axes)
    save_figure(figure, out)
    return labels
