"""F1: gradient geometry over training steps, BLUR against the weighted sum (train logs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.report.figures import integer_ticks, new_figure, save_figure, shared_legend
from bilevel_unlearning.report.style import display

PANELS = (
    ("inner", r"$\langle g_R, g_F\rangle$", "symlog"),
    ("forget_sq", r"$\|g_F\|^2$", "log"),
    ("retain_sq", r"$\|g_R\|^2$", "log"),
    ("cosine", r"$\cos(g_R, g_F)$", "linear"),
    ("xi", r"$\xi$", "symlog"),  # explodes as NPO saturates and g_F vanishes
)


def plot_geometry(logs: Mapping[str, Path], colours: Mapping[str, str], out: Path) -> list[str]:
    """One panel per statistic; one line per run (its step log)."""
    figure, axes = new_figure(len(PANELS), height=1.5, columns=2.0)
    for run, path in logs.items():
        records = read_jsonl(path, made_by="its unlearn_<benchmark> rule")
        steps = [r["step"] for r in records]
        for ax, (key, label, scale) in zip(axes, PANELS, strict=True):
            if key in records[0]:  # xi exists for BLUR's rules only
                ax.plot(steps, [r[key] for r in records], label=display(run), color=colours[run])
            ax.set_title(label)
            ax.set_yscale(scale)
            ax.set_xlabel("step")
            integer_ticks(ax)
    labels = shared_legend(figure, axes)
    save_figure(figure, out)
    return labels


def geometry_runs(methods: Sequence[str], logs: Sequence[str]) -> dict[str, Path]:
    """Pair each method with its log path (the workflow passes them in the same order)."""
    return {m: Path(p) for m, p in zip(methods, logs, strict=True)}
