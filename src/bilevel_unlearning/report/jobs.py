"""Which result files and settings feed each table and figure of the report: pure functions
of the config, shared by workflow/rules/report.smk (a rule per job, its inputs and params) and
tested without running Snakemake. Torch-free: the workflow plans with it.

A job's inputs are evaluations named by `runs` (table_rows, sweep_points, attacked_rows) and
step logs; its settings are what the builder in report/run.py reads besides them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.metric_catalog import PAPER_TABLES
from bilevel_unlearning.runs import (
    HELDOUT_RELEARN,
    NO_ATTACK,
    attack_kind,
    attack_names,
    attacked_benchmarks,
    attacked_rows,
    eval_path,
    extra_seeds,
    heldout_part,
    heldout_split_path,
    reference_models,
    reference_rows,
    relearn_steps,
    seed_rows,
    sweep_points,
    table_epoch,
    table_rows,
)

# Beyond the paper, their own part (target `robustness`, manifest and comparison of their own)
ROBUSTNESS_OUTPUTS = ("table_4_robustness", "figure_5_relearning")
PARTS = ("paper", "robustness")


@dataclass(frozen=True)
class ReportJob:
    inputs: list[str]  # result files: evaluations, step logs
    settings: dict[str, Any]  # what the builder reads besides them (a JSON parameter)
    category: str  # the Snakemake report's category
    modules: tuple[str, ...] = field(default=())  # a figure's own plotting modules


def _evals(config: Mapping[str, Any], benchmark: str, rows: Sequence[tuple[str, int]]) -> list[str]:
    return [eval_path(config["results_dir"], benchmark, row, epoch) for row, epoch in rows]


def seed_setting(seeds: Sequence[int | None]) -> dict[str, Any]:
    """A figure's seeds setting: only with several seeds, so a one-seed config's figure
    settings (and so its figures) stay as they were."""
    return {"seeds": list(seeds)} if len(seeds) > 1 else {}


def row_suffix(config: Mapping[str, Any], benchmark: str) -> str:
    """What a one-split figure appends to a method's name: TOFU's first forget split."""
    return f"-{config['tofu']['forget_splits'][0]}" if bench(benchmark).per_split else ""


# ------------------------------------------------------------------------------------ tables


def selection_rules(config: Mapping[str, Any], benchmarks: Sequence[str]) -> dict[str, Any]:
    """benchmark -> its checkpoint-selection rule (`evaluate.<b>.select`), where it has one."""
    return {
        b: config["evaluate"][b]["select"]
        for b in benchmarks
        if config["evaluate"][b].get("select")
    }


def selectable_rows(config: Mapping[str, Any], benchmark: str) -> list[tuple[str, int]]:
    """The table's rows (runs.table_rows); under a selection rule every unlearned row once per
    evaluated epoch, for the rule to choose from (report.selection)."""
    rows = table_rows(config, benchmark)
    if not config["evaluate"][benchmark].get("select"):
        return rows
    epochs = sorted(config["evaluate"][benchmark]["epochs"])
    return [(row, e) for row, epoch in rows for e in ([0] if epoch == 0 else epochs)]


def table_settings(config: Mapping[str, Any], benchmarks: Sequence[str]) -> dict[str, Any]:
    """What a paper table reads: each benchmark's (row, epoch) evaluations (runs.table_rows)
    and table epoch, with the WMDP topics or TOFU splits where a benchmark has them; under a
    selection rule every evaluated epoch, the rule, and each row's fixed epoch to fall back to."""
    settings: dict[str, Any] = {
        "rows": {b: selectable_rows(config, b) for b in benchmarks},
        "epochs": {b: table_epoch(config, b) for b in benchmarks},
    }
    selects = selection_rules(config, benchmarks)
    if selects:
        settings["select"] = selects
        settings["fallback_epochs"] = {b: dict(table_rows(config, b)) for b in selects}
    if any(bench(b).topics for b in benchmarks):
        settings["topics"] = config["wmdp"]["topics"]
    if any(bench(b).per_split for b in benchmarks):
        settings["splits"] = config["tofu"]["forget_splits"]
    return settings


def robustness_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """What T4 and F5 read: the attacked (row, epoch) of each benchmark and its reference rows."""
    attacked = attacked_benchmarks(config)
    return {
        "rows": {b: attacked_rows(config, b) for b in attacked},
        "references": {b: list(reference_models(config, b)) for b in attacked},
        "topics": config["wmdp"]["topics"],
    }


def robustness_inputs(config: Mapping[str, Any], kinds: Sequence[str]) -> list[str]:
    """Every attacked row's evaluation without attack and after each of its benchmark's
    attacks of these kinds (relearn, quantize)."""
    return [
        eval_path(config["results_dir"], b, row, epoch, attack)
        for b in attacked_benchmarks(config)
        for row, epoch in attacked_rows(config, b)
        for attack in [NO_ATTACK, *attack_names(config, b)]
        if attack == NO_ATTACK or attack_kind(attack) in kinds
    ]


def table_jobs(config: Mapping[str, Any]) -> dict[str, ReportJob]:
    """The tables of this config: each paper table over its family's configured benchmarks
    (metric_catalog.PAPER_TABLES), and T4 where anything is attacked."""
    jobs = {}
    for name, (family, category) in PAPER_TABLES.items():
        members = [b for b in config["benchmarks"] if bench(b).family == family]
        if members:
            settings = table_settings(config, members)
            inputs = [f for b, rows in settings["rows"].items() for f in _evals(config, b, rows)]
            jobs[name] = ReportJob(inputs, settings, category)
    if attacked_benchmarks(config):
        splits = heldout_splits(config)
        settings = {**robustness_settings(config), "attacks": attack_names(config)}
        settings.update({"heldout_splits": splits} if splits else {})
        inputs = robustness_inputs(config, ("relearn", HELDOUT_RELEARN, "quantize"))
        inputs += [path for parts in splits.values() for path in parts.values()]
        jobs["table_4_robustness"] = ReportJob(inputs, settings, "Robustness", ("robustness.py",))
    return jobs


def heldout_splits(config: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """benchmark -> heldout_part -> split file, for every benchmark with held-out relearning."""
    return {
        b: {
            part: heldout_split_path(config["results_dir"], b, part)
            for part in dict.fromkeys(heldout_part(b, row) for row, _ in attacked_rows(config, b))
        }
        for b in attacked_benchmarks(config)
        if any(attack_kind(a) == HELDOUT_RELEARN for a in attack_names(config, b))
    }


# ----------------------------------------------------------------------------------- figures


def geometry_jobs(
    config: Mapping[str, Any], entry: Mapping[str, Any] | None
) -> dict[str, ReportJob]:
    """F1 reads the step logs of the chosen methods' runs."""
    if not entry or entry["benchmark"] not in config["benchmarks"]:
        return {}
    folder = f"{config['results_dir']}/{entry['benchmark']}/unlearn"
    logs = [f"{folder}/{m}/train_log.jsonl" for m in entry["methods"]]
    job = ReportJob(logs, {"methods": entry["methods"]}, "Gradient geometry", ("fig_geometry.py",))
    return {"figure_1_geometry": job}


def ablation_jobs(config: Mapping[str, Any], benchmark: str | None) -> dict[str, ReportJob]:
    """F2 and F3 read the gamma sweep's runs at the table epoch, and the reference models."""
    if benchmark not in config["benchmarks"] or not sweep_points(config, benchmark):
        return {}
    points, epoch = sweep_points(config, benchmark), table_epoch(config, benchmark)
    seeds = extra_seeds(config, benchmark)
    runs = [
        (row, epoch)
        for run in sorted({run for _, _, run in points})
        for row in seed_rows(run, seeds)
    ]
    inputs = _evals(config, benchmark, reference_rows(config, benchmark) + runs)
    settings = {"benchmark": benchmark, "epoch": epoch, "points": points, **seed_setting(seeds)}
    return {
        "figure_2_gamma": ReportJob(inputs, settings, "Ablation", ("fig_gamma.py",)),
        "figure_3_tradeoff": ReportJob(
            inputs, settings, "Ablation", ("fig_gamma.py", "fig_tradeoff.py")
        ),
    }


def trajectories_jobs(config: Mapping[str, Any], benchmark: str | None) -> dict[str, ReportJob]:
    """F4 reads every evaluated epoch of the benchmark's methods (TOFU: its first split)."""
    if benchmark not in config["benchmarks"]:
        return {}
    epochs = config["evaluate"][benchmark]["epochs"]
    methods = config["unlearn"][benchmark]["methods"]
    suffix = row_suffix(config, benchmark)
    seeds = extra_seeds(config, benchmark)
    rows = [(row, e) for m in methods for row in seed_rows(m, seeds, suffix) for e in epochs]
    inputs = _evals(config, benchmark, reference_rows(config, benchmark) + rows)
    settings = {"benchmark": benchmark, "methods": methods, "epochs": sorted(epochs)}
    settings.update(seed_setting(seeds))
    if config["evaluate"][benchmark].get("select"):  # F4 marks each method's chosen epoch
        settings["select"] = config["evaluate"][benchmark]["select"]
        settings["fallback_epochs"] = dict(table_rows(config, benchmark))
    settings.update({"suffix": suffix} if suffix else {})
    job = ReportJob(inputs, settings, "Trajectories", ("fig_trajectories.py",))
    return {"figure_4_trajectories": job}


def relearning_jobs(config: Mapping[str, Any]) -> dict[str, ReportJob]:
    """F5 reads every attacked row without attack and after each relearning length."""
    if not any(attack_kind(a) == "relearn" for a in attack_names(config)):
        return {}
    steps = {b: relearn_steps(config, b) for b in attacked_benchmarks(config)}
    settings = {**robustness_settings(config), "steps": steps}
    inputs = robustness_inputs(config, ("relearn",))
    return {
        "figure_5_relearning": ReportJob(inputs, settings, "Robustness", ("fig_relearning.py",))
    }


def figure_jobs(config: Mapping[str, Any]) -> dict[str, ReportJob]:
    """The figures the config's `figures` section and attacks ask for, each with the methods'
    colours fixed by the config's whole method list (all_methods)."""
    figures = config.get("figures", {})
    jobs = {
        **geometry_jobs(config, figures.get("geometry")),
        **ablation_jobs(config, figures.get("ablation")),
        **trajectories_jobs(config, figures.get("trajectories")),
        **relearning_jobs(config),
    }
    colours = {"all_methods": list(config["methods"])}
    return {name: replace(job, settings={**job.settings, **colours}) for name, job in jobs.items()}


# ------------------------------------------------------------------------------------- parts


def part_of(name: str) -> str:
    """paper, or robustness for T4 and F5 (beyond the paper, their own target)."""
    return "robustness" if name in ROBUSTNESS_OUTPUTS else "paper"


def part_tables(tables: Mapping[str, ReportJob], part: str) -> list[str]:
    return [name for name in tables if part_of(name) == part]


def part_outputs(
    tables: Mapping[str, ReportJob], figures: Mapping[str, ReportJob], part: str
) -> list[str]:
    """The files a part writes under paper_figures/ (a table in three forms, a figure in two)."""
    names = [(t, ("csv", "md", "tex")) for t in part_tables(tables, part)]
    names += [(f, ("pdf", "png")) for f in figures if part_of(f) == part]
    return [f"paper_figures/{name}.{x}" for name, suffixes in names for x in suffixes]


def part_results(
    tables: Mapping[str, ReportJob], figures: Mapping[str, ReportJob], part: str
) -> list[str]:
    """Every result file a part's tables and figures read (its manifest records each)."""
    jobs = [job for name, job in {**tables, **figures}.items() if part_of(name) == part]
    return sorted({f for job in jobs for f in job.inputs})


def evaluation_results(paths: Sequence[str]) -> list[str]:
    """The evaluation JSONs among a part's inputs: the comparison with published numbers
    reads results, not F1's step logs (train_log.jsonl) that the part also reads."""
    return [p for p in paths if p.endswith(".json") and "/eval/" in p]
