"""What every figure shares: reading results, saving PDF + PNG atomically and reproducibly."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.io import atomic_path
from bilevel_unlearning.report.style import COLUMN_WIDTH, figure_style


def new_figure(panels: int, height: float = 1.6, columns: float = 1.0) -> tuple[Any, Any]:
    """A row of panels sized for `columns` paper columns (1 or 2)."""
    import matplotlib.pyplot as plt

    figure_style()
    figure, axes = plt.subplots(
        1, panels, figsize=(COLUMN_WIDTH * columns, height), squeeze=False, layout="constrained"
    )
    return figure, list(axes[0])


def save_figure(figure: Any, stem: Path) -> None:
    """stem.pdf and stem.png, no timestamps inside: the same data gives the same bytes."""
    import matplotlib.pyplot as plt

    for suffix, metadata in ((".pdf", {"CreationDate": None}), (".png", {"Software": None})):
        destination = stem.with_suffix(suffix)
        with atomic_path(destination) as tmp:
            # tight: a legend wider than a one-panel figure is kept whole, not clipped
            figure.savefig(tmp, format=suffix[1:], metadata=metadata, bbox_inches="tight")
    plt.close(figure)


def shared_legend(figure: Any, axes: Sequence[Any]) -> list[str]:
    """One legend for the figure, below the panels, each series once; returns its labels."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    columns = min(len(handles), 2 * len(axes) + 1)  # as many as the panels' width holds
    figure.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=columns)
    return list(handles)


def metric_at(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    benchmark: str,
    row: str,
    epoch: int,
    name: str,
) -> float:
    """A metric of a result that must exist, as tables show it (metric_catalog.shown); a
    missing one names the file the rule needs."""
    key = (benchmark, row, epoch)
    if key not in results:
        raise KeyError(f"no evaluation of {row} at epoch {epoch} on {benchmark} among the inputs")
    return catalog.shown(name, float(results[key]["metrics"][name]))


def metric_over_seeds(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    benchmark: str,
    rows: Sequence[str],
    epoch: int,
    name: str,
) -> tuple[float, float]:
    """A metric's mean and standard deviation over a run's seed rows (runs.seed_rows); the
    deviation is 0 for one seed."""
    values = [metric_at(results, benchmark, row, epoch, name) for row in rows]
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot_with_spread(ax: Any, xs: Sequence[float], stats: Sequence[tuple[float, float]], **style):
    """A line through the means, and the band mean +- one standard deviation where there are
    several seeds."""
    means = [m for m, _ in stats]
    ax.plot(xs, means, marker="o", **style)
    if any(sd > 0 for _, sd in stats):
        low = [m - sd for m, sd in stats]
        high = [m + sd for m, sd in stats]
        ax.fill_between(xs, low, high, color=style.get("color"), alpha=0.2, linewidth=0)


def integer_ticks(ax: Any) -> None:
    """Steps and epochs are whole numbers: no 2.5 on their axis."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
