"""The report steps the workflow runs: one table or one figure from its result files.

Settings arrive from the config (methods, epochs, the sweep); values come from the result
JSONs and step logs only, so every number in paper_figures/ traces back to a result file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.report import tables
from bilevel_unlearning.report.style import method_colours


def _colours(settings: Mapping[str, Any]) -> dict[str, str]:
    return method_colours(settings["all_methods"])


def attacked_rows(settings: Mapping[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """benchmark -> (row, epoch) of the attacked models, from the settings' JSON lists."""
    return {b: [(row, int(epoch)) for row, epoch in rows] for b, rows in settings["rows"].items()}


def build_table(name: str, inputs: Sequence[str], settings: Mapping[str, Any], out: Path) -> None:
    if name == "table_4_robustness":  # reads every attack's results, each file once
        table = tables.robustness_table(
            tables.load_all_results(inputs),
            attacked_rows(settings),
            settings["attacks"],
            settings["topics"],
            settings["references"],
        )
        tables.write_table(table, out)
        return
    results = tables.load_results(inputs)
    if name in ("table_1_muse", "table_s1_muse_mia"):
        table = tables.muse_table(
            results,
            settings["methods"],
            settings["epochs"],
            settings.get("method_epochs"),
            mia=name == "table_s1_muse_mia",
        )
    elif name == "table_2_wmdp":
        table = tables.wmdp_table(
            results,
            settings["methods"],
            settings["epoch"],
            settings["topics"],
            settings.get("method_epochs"),
        )
    elif name == "table_3_tofu":
        table = tables.tofu_table(
            results,
            settings["methods"],
            settings["epoch"],
            settings["splits"],
            settings.get("method_epochs"),
        )
    else:
        raise ValueError(f"unknown table {name!r}")
    tables.write_table(table, out)


def build_figure(name: str, inputs: Sequence[str], settings: Mapping[str, Any], out: Path) -> None:
    colours = _colours(settings)
    if name == "figure_1_geometry":
        from bilevel_unlearning.report.fig_geometry import geometry_runs, plot_geometry

        plot_geometry(geometry_runs(settings["methods"], inputs), colours, out)
        return
    if name == "figure_5_relearning":
        from bilevel_unlearning.report.fig_relearning import plot_relearning

        plot_relearning(
            tables.load_all_results(inputs),
            attacked_rows(settings),
            settings["references"],
            settings["steps"],
            settings["topics"],
            colours,
            out,
        )
        return
    results = tables.load_results(inputs)
    if name == "figure_2_gamma":
        from bilevel_unlearning.report.fig_gamma import plot_gamma

        points = [tuple(p) for p in settings["points"]]
        plot_gamma(results, settings["benchmark"], settings["epoch"], points, colours, out)
    elif name == "figure_3_tradeoff":
        from bilevel_unlearning.report.fig_tradeoff import plot_tradeoff

        points = [tuple(p) for p in settings["points"]]
        plot_tradeoff(results, settings["benchmark"], settings["epoch"], points, colours, out)
    elif name == "figure_4_trajectories":
        from bilevel_unlearning.report.fig_trajectories import plot_trajectories

        plot_trajectories(
            results, settings["benchmark"], settings["methods"], settings["epochs"], colours, out
        )
    else:
        raise ValueError(f"unknown figure {name!r}")


def report_step(
    *, name: str, inputs: Sequence[str], settings: Mapping[str, Any], out: Path
) -> None:
    """One table (table_*: CSV, Markdown, LaTeX) or figure (figure_*: PDF, PNG) of
    paper_figures/, at out with each suffix."""
    if name.startswith("table_"):
        build_table(name, inputs, settings, out)
    else:
        build_figure(name, inputs, settings, out)
