"""docs/paper_settings.md: every setting of the paper config's runs, resolved, with its source.

The values come from the config exactly as the jobs resolve them (runs.unlearn_runs, the
method overrides, unlearn.run.loop_settings); the sources from config/paper_sources.yaml. A
setting without a source is an error, so the document cannot silently fall behind the config;
`tests/unit/test_paper_settings.py` checks that the committed document equals a fresh rendering.

    python -m bilevel_unlearning.cli paper-settings --out docs/paper_settings.md
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.runs import unlearn_runs

# Loop settings of a run, in the order the document lists them.
LOOP_KEYS = (
    "learning_rate",
    "epochs",
    "max_steps_per_epoch",
    "batch_size",
    "micro_batch_size",
    "max_length",
    "forget_lengths",
    "corpus_form",
    "schedule",
    "warmup_steps",
    "warmup_epochs",
    "weight_decay",
    "clip_norm",
    "seed",
)


class MissingSourceError(ValueError):
    """A resolved setting has no entry in the sources file."""


def source_of(
    sources: Mapping[str, Any], benchmark: str, method: str | None, key: str, missing: list[str]
) -> str:
    """The most specific source: the method on this benchmark, the method anywhere, the
    benchmark, any benchmark. A setting without one is added to `missing`."""
    methods, benchmarks = sources.get("methods", {}), sources.get("benchmarks", {})
    candidates = []
    if method is not None:
        candidates += [methods.get(benchmark, {}).get(method, {})]
        candidates += [methods.get("*", {}).get(method, {})]
    candidates += [benchmarks.get(benchmark, {}), benchmarks.get("*", {})]
    for table in candidates:
        if key in table:
            return str(table[key])
    missing.append(" ".join(part for part in (benchmark, method, key) if part))
    return "?"


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(_show, value))
    return str(value)


def benchmark_rows(
    config: Mapping[str, Any], sources: Mapping[str, Any], benchmark: str, missing: list[str]
) -> list[tuple[str, str, str, str]]:
    """(method, setting, value, source) of every run of the benchmark (its first split on
    TOFU: the others differ in the split only)."""
    from bilevel_unlearning.unlearn.run import loop_settings

    runs = unlearn_runs(config, benchmark)
    listed = config["unlearn"][benchmark]["methods"]
    per_split = bench(benchmark).per_split  # one row per split: the first split's
    split = (config["tofu"]["forget_splits"][0],) if per_split else ()
    evaluate = config["evaluate"][benchmark]
    rows = []
    for method in listed:
        run = runs["-".join((method, *split))]
        seed = run.settings.get("seed", config["seed"])
        loop = loop_settings(run.params, run.settings, seed)
        values = {key: getattr(loop, key, run.settings.get(key)) for key in LOOP_KEYS}
        values["forget_lengths"] = run.settings.get("forget_lengths")
        values = {k: v for k, v in values.items() if v is not None or k == "clip_norm"}
        if values.get("warmup_epochs") is not None:
            values.pop("warmup_steps")
        values["gradient_checkpointing"] = bool(run.settings.get("gradient_checkpointing"))
        values["optimizer"] = "AdamW"
        values["precision"] = config["precision"]
        values.update({k: v for k, v in run.params.items() if k not in values})
        default = evaluate.get("table_epoch", max(evaluate["epochs"]))
        values["table_epoch"] = evaluate.get("method_table_epochs", {}).get(method, default)
        rows += [
            (method, k, _show(v), source_of(sources, benchmark, method, k, missing))
            for k, v in values.items()
        ]
    return rows


def evaluation_rows(
    config: Mapping[str, Any], sources: Mapping[str, Any], benchmark: str, missing: list[str]
) -> list[tuple[str, str, str]]:
    section = bench(benchmark).family  # the family's metric settings
    values = {k: v for k, v in config[section].items() if k != "bio_forget_file"}
    values["batch_size"] = config["evaluate"][benchmark].get("batch_size", 32)
    return [
        (k, _show(v), source_of(sources, benchmark, None, f"eval.{k}", missing))
        for k, v in values.items()
    ]


def render(config: Mapping[str, Any], sources: Mapping[str, Any]) -> str:
    """The whole document; raises MissingSourceError listing every setting without a source."""
    lines = [
        "# Paper settings and their sources",
        "",
        "Generated from `config/paper.yaml` (merged over `config/config.yaml`, as the workflow",
        "reads it) and `config/paper_sources.yaml` by `python -m bilevel_unlearning.cli",
        "paper-settings`; do not edit by hand. Values are what the jobs run with.",
        "",
        "Sources:",
        "",
        *(f"- **{k}**: {v}" for k, v in sources["abbreviations"].items()),
        "",
    ]
    missing: list[str] = []
    for benchmark in config["benchmarks"]:
        lines += [f"## {benchmark}", "", "| method | setting | value | source |"]
        lines.append("|---|---|---|---|")
        rows = benchmark_rows(config, sources, benchmark, missing)
        evaluation = evaluation_rows(config, sources, benchmark, missing)
        lines += [f"| {m} | `{k}` | {v} | {s} |" for m, k, v, s in rows]
        lines += ["", "Evaluation:", "", "| setting | value | source |", "|---|---|---|"]
        lines += [f"| `{k}` | {v} | {s} |" for k, v, s in evaluation]
        lines.append("")
    if missing:
        raise MissingSourceError(
            "settings without a source in config/paper_sources.yaml: " + "; ".join(missing)
        )
    deviations = sources.get("deviations", [])
    lines += ["## Known deviations from the authors' runs", ""]
    lines += [f"- {d}" for d in deviations]
    return "\n".join(lines) + "\n"


def paper_config(repo: Path) -> dict[str, Any]:
    from snakemake.utils import update_config

    from bilevel_unlearning.config import read_yaml

    merged = read_yaml(repo / "config" / "config.yaml")
    update_config(merged, read_yaml(repo / "config" / "paper.yaml"))
    return merged
