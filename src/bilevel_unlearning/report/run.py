"""The report steps the workflow runs: one table or one figure from its result files.

Settings arrive from the config (methods, epochs, the sweep); values come from the result
JSONs and step logs only, so every number in paper_figures/ traces back to a result file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bilevel_unlearning.io import read_json
from bilevel_unlearning.report import tables
from bilevel_unlearning.report.jobs import evaluation_results
from bilevel_unlearning.report.style import method_colours


def _colours(settings: Mapping[str, Any]) -> dict[str, str]:
    return method_colours(settings["all_methods"])


def row_lists(settings: Mapping[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """benchmark -> (row, epoch) a table or figure reads, from the settings' JSON lists
    (runs.table_rows for the paper tables, runs.attacked_rows for the robustness part)."""
    return {b: [(row, int(epoch)) for row, epoch in rows] for b, rows in settings["rows"].items()}


def chosen_rows(
    results: Mapping, settings: Mapping[str, Any]
) -> tuple[dict[str, list[tuple[str, int]]], tuple[str, ...]]:
    """The rows a paper table shows, each at one epoch: under a selection rule the epoch it
    chooses (report.selection), with the notes that say which and why."""
    rows = row_lists(settings)
    if not settings.get("select"):
        return rows, ()
    from bilevel_unlearning.report.selection import select_rows, selection_notes

    rows, choices = select_rows(results, rows, settings["select"], settings["fallback_epochs"])
    return rows, selection_notes(choices, settings["select"])


def build_table(name: str, inputs: Sequence[str], settings: Mapping[str, Any], out: Path) -> None:
    if name == "table_4_robustness":  # reads every attack's results, each file once
        from bilevel_unlearning.report.robustness import robustness_table

        results = tables.load_all_results(evaluation_results(inputs))
        splits = {
            b: {
                part: read_json(path, made_by="its heldout_split rule")
                for part, path in parts.items()
            }
            for b, parts in settings.get("heldout_splits", {}).items()
        }
        attacks, topics = settings["attacks"], settings["topics"]
        table = robustness_table(
            results, row_lists(settings), attacks, topics, settings["references"], splits
        )
        tables.write_table(table, out)
        return
    results = tables.load_results(inputs)  # each file read once, the selection rule included
    rows, notes = chosen_rows(results, settings)
    if name in ("table_1_muse", "table_s1_muse_mia"):
        mia = name == "table_s1_muse_mia"
        table = tables.muse_table(results, rows, settings["epochs"], mia)
    elif name == "table_2_wmdp":
        table = tables.wmdp_table(results, rows, settings["epochs"], settings["topics"])
    elif name == "table_3_tofu":
        table = tables.tofu_table(results, rows, settings["epochs"], settings["splits"])
    else:
        raise ValueError(f"unknown table {name!r}")
    tables.write_table(replace(table, notes=(*table.notes, *notes)), out)


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
            row_lists(settings),
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
        seeds = settings.get("seeds", [None])
        plot_gamma(results, settings["benchmark"], settings["epoch"], points, colours, out, seeds)
    elif name == "figure_3_tradeoff":
        from bilevel_unlearning.report.fig_tradeoff import plot_tradeoff

        points = [tuple(p) for p in settings["points"]]
        seeds = settings.get("seeds", [None])
        plot_tradeoff(
            results, settings["benchmark"], settings["epoch"], points, colours, out, seeds
        )
    elif name == "figure_4_trajectories":
        from bilevel_unlearning.report.fig_trajectories import plot_trajectories

        benchmark, methods, epochs = settings["benchmark"], settings["methods"], settings["epochs"]
        suffix = settings.get("suffix", "")
        seeds = settings.get("seeds", [None])
        chosen = chosen_epochs(results, settings) if settings.get("select") else {}
        plot_trajectories(results, benchmark, methods, epochs, colours, out, suffix, seeds, chosen)
    else:
        raise ValueError(f"unknown figure {name!r}")


def chosen_epochs(results: Mapping, settings: Mapping[str, Any]) -> dict[str, int]:
    """F4's marks: the epoch the selection rule chooses for each method's own-seed row."""
    from bilevel_unlearning.report.selection import choose_epoch

    benchmark, suffix = settings["benchmark"], settings.get("suffix", "")
    fallbacks = settings["fallback_epochs"]
    return {
        method: choose_epoch(
            results,
            benchmark,
            method + suffix,
            settings["epochs"],
            settings["select"],
            fallbacks[method + suffix],
        ).epoch
        for method in settings["methods"]
    }


def report_step(
    *, name: str, inputs: Sequence[str], settings: Mapping[str, Any], out: Path
) -> None:
    """One table (table_*: CSV, Markdown, LaTeX) or figure (figure_*: PDF, PNG) of
    paper_figures/, at out with each suffix."""
    if name.startswith("table_"):
        build_table(name, inputs, settings, out)
    else:
        build_figure(name, inputs, settings, out)
