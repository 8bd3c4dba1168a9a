"""F5: a forget metric against relearning steps (0: no attack), one line per attacked row.

A method whose line climbs back to its start model's value only hid the knowledge; the oracle's
line is what the same steps teach a model that never saw it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.report.figures import integer_ticks, new_figure, save_figure, shared_legend
from bilevel_unlearning.report.style import ARROWS, REFERENCE_COLOUR, display
from bilevel_unlearning.report.tables import BENCHMARK_LABELS
from bilevel_unlearning.runs import NO_ATTACK, ORACLE_ROLE, attack_name


def curve(
    results: Mapping[tuple[str, str, int, str], Mapping[str, Any]],
    benchmark: str,
    row: str,
    epoch: int,
    steps: Sequence[int],
    name: str,
) -> list[float]:
    """The metric without attack, then after each relearning length; a missing evaluation
    names the file the rule needs."""
    points = []
    for attack in (NO_ATTACK, *(attack_name("relearn", n) for n in steps)):
        key = (benchmark, row, epoch, attack)
        if key not in results:
            raise KeyError(f"no evaluation of {row} ({attack}) at epoch {epoch} on {benchmark}")
        points.append(float(results[key]["metrics"][name]))
    return points


def plot_relearning(
    results: Mapping[tuple[str, str, int, str], Mapping[str, Any]],
    rows: Mapping[str, Sequence[tuple[str, int]]],
    references: Mapping[str, Sequence[str]],
    steps: Mapping[str, Sequence[int]],
    topics: Sequence[str],
    colours: Mapping[str, str],
    out: Path,
) -> list[str]:
    """One panel per (benchmark, forget metric), against that benchmark's relearning lengths
    (steps: benchmark -> lengths); returns the legend's labels."""
    panels = [(b, name) for b in rows for name in catalog.relearning_panels(b, topics)]
    figure, axes = new_figure(len(panels), height=1.8, columns=min(2.0, 0.8 * len(panels)))
    for ax, (benchmark, name) in zip(axes, panels, strict=True):
        xs = [0, *steps[benchmark]]
        metric = catalog.METRICS[name]
        for row, epoch in rows[benchmark]:
            points = curve(results, benchmark, row, epoch, steps[benchmark], name)
            ys = [catalog.shown(name, y) for y in points]
            method = row.split("-")[0]
            if row in references.get(benchmark, ()):
                colour, style = REFERENCE_COLOUR, ":" if method in ORACLE_ROLE.values() else "--"
            else:
                colour, style = colours.get(method, REFERENCE_COLOUR), "-"
            ax.plot(xs, ys, marker="o", label=display(method), color=colour, linestyle=style)
        ax.set_xlabel("relearning steps")
        integer_ticks(ax)
        ax.set_xticks(xs)
        title = f"{metric.label} {ARROWS[metric.direction]}"
        ax.set_title(f"{BENCHMARK_LABELS.get(benchmark, benchmark)}: {title}")
    labels = shared_legend(figure, axes)
    save_figure(figure, out)
    return labels
