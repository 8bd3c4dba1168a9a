"""F4: forget and utility metrics across epochs, one line per method (epoch 0 = start model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.report.figures import (
    integer_ticks,
    metric_at,
    new_figure,
    save_figure,
    shared_legend,
)
from bilevel_unlearning.report.style import REFERENCE_COLOUR, display

PANELS = {
    "muse": (("knowmem_forget", "KnowMem D_f ↓"), ("knowmem_retain", "KnowMem D_r ↑")),
    "tofu": (("forget_quality", "Forget quality ↑"), ("model_utility", "Model utility ↑")),
    "wmdp": (("wmdp_bio_acc", "WMDP-Bio ↓"), ("mmlu_acc", "MMLU ↑")),
}
START = {"muse": "target", "tofu": "full", "wmdp": "original"}


def plot_trajectories(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    benchmark: str,
    methods: Sequence[str],
    epochs: Sequence[int],
    colours: Mapping[str, str],
    out: Path,
    suffix: str = "",
) -> list[str]:
    """Each method's path from the start model (epoch 0) through its evaluated epochs."""
    family = benchmark.split("_")[0]
    panels = PANELS[family]
    figure, axes = new_figure(len(panels), height=1.8, columns=2.0)
    start = START[family] + suffix
    for ax, (name, title) in zip(axes, panels, strict=True):
        for method in methods:
            xs = [0, *epochs]
            ys = [metric_at(results, benchmark, start, 0, name)]
            ys += [metric_at(results, benchmark, method + suffix, e, name) for e in epochs]
            ax.plot(xs, ys, marker="o", label=display(method), color=colours[method])
        if family == "muse":
            oracle = metric_at(results, benchmark, "retrain", 0, name)
            ax.axhline(oracle, color=REFERENCE_COLOUR, linestyle=":", label=display("retrain"))
        ax.set_xlabel("epoch")
        integer_ticks(ax)
        ax.set_xticks([0, *epochs])
        ax.set_title(title)
    labels = shared_legend(figure, axes)
    save_figure(figure, out)
    return labels
