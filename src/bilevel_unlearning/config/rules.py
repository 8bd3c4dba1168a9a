"""Cross-field rules: what a JSON Schema cannot express (method references, epochs that must
exist, sweeps, attacks, figures, model shapes); the methods' own rules are in method_rules.py,
the hub entries' in hub_rules.py."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bilevel_unlearning.benchmarks import BENCHMARKS
from bilevel_unlearning.config.hub_rules import hub_problems
from bilevel_unlearning.config.messages import (
    key_path,
    not_allowed,
    suggestion,
)
from bilevel_unlearning.config.method_rules import method_problems
from bilevel_unlearning.config.values import as_mapping, has_trait, int_or_none, items_of
from bilevel_unlearning.metric_catalog import table_metrics


def cross_field_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every violated rule that spans several keys."""
    known = as_mapping(as_mapping(schema.get("$defs")).get("benchmark_name")).get("enum", [])
    return [
        *non_finite_problems(config),
        *benchmark_coverage_problems(config, known),
        *method_reference_problems(config),
        *sweep_problems(config),
        *robustness_problems(config),
        *evaluate_epoch_problems(config),
        *figure_problems(config),
        *method_problems(config),
        *architecture_problems(config),
        *hub_problems(config, known),
    ]


def benchmark_coverage_problems(config: Mapping[str, Any], known: Sequence[str]) -> list[str]:
    """Each benchmark in `benchmarks` needs an `unlearn` and an `evaluate` entry.

    Entries for benchmarks that are not listed are allowed and ignored: Snakemake merges an
    override (--config benchmarks=[tofu], --configfile) into the default config key by key,
    so the default's other entries cannot be removed, and requiring that would make running a
    subset of the benchmarks impossible. Their names are still checked by the schema, which
    also reports unknown names in `benchmarks` (`known`), so those are skipped here.
    """
    problems = []
    for _, name in items_of(config.get("benchmarks")):
        if name not in known:
            continue
        for section, needs in (
            ("unlearn", "methods, epochs, learning_rate"),
            ("evaluate", "epochs"),
        ):
            section_value = config.get(section)
            if isinstance(section_value, Mapping) and name not in section_value:
                problems.append(
                    f"config key '{section}.{name}' is missing: benchmark '{name}' is listed "
                    f"in 'benchmarks', so '{section}' needs an entry for it ({needs})"
                )
    return problems


def _unknown_methods(path: list, names: Any, defined: list[str]) -> list[str]:
    return [
        not_allowed(
            [*path, index],
            name,
            f"no such method; the methods defined under 'methods' are "
            f"{', '.join(defined)}" + suggestion(name, defined),
        )
        for index, name in items_of(names)
        if isinstance(name, str) and name not in defined
    ]


def method_reference_problems(config: Mapping[str, Any]) -> list[str]:
    """Every method that `unlearn.<benchmark>.methods` names must be defined in `methods`."""
    defined = sorted(as_mapping(config.get("methods")))
    problems = []
    for benchmark, entry in as_mapping(config.get("unlearn")).items():
        problems += _unknown_methods(
            ["unlearn", benchmark, "methods"], as_mapping(entry).get("methods"), defined
        )
    return problems


def sweep_problems(config: Mapping[str, Any]) -> list[str]:
    """A swept method must exist and weigh a retain loss by gamma; its benchmark must run."""
    methods = as_mapping(config.get("methods"))
    problems = []
    for benchmark, entry in as_mapping(config.get("sweeps")).items():
        names = as_mapping(entry).get("methods")
        problems += _unknown_methods(["sweeps", benchmark, "methods"], names, sorted(methods))
        if benchmark not in as_mapping(config.get("unlearn")):
            problems.append(
                f"config key 'sweeps.{benchmark}' needs 'unlearn.{benchmark}' (epochs, "
                "learning_rate, ...): the sweep's runs take their settings from it"
            )
        for index, name in items_of(names):
            method = as_mapping(methods.get(name))
            if method and (method.get("retain_loss") is None or "alpha" in method):
                problems.append(
                    not_allowed(
                        ["sweeps", benchmark, "methods", index],
                        name,
                        "gamma does not act on this method (it needs a retain_loss and no "
                        "alpha); sweep a method such as npo_gdr or blur_npo",
                    )
                )
    return problems


def robustness_problems(config: Mapping[str, Any]) -> list[str]:
    """An attacked method must be one its benchmark runs; an attacked TOFU split a configured
    one; a benchmark's relearn overrides need a shared `relearn` recipe to override."""
    robustness = as_mapping(config.get("robustness"))
    unlearn = as_mapping(config.get("unlearn"))
    problems = []
    for benchmark, entry in as_mapping(robustness.get("benchmarks")).items():
        entry = as_mapping(entry)
        path = ["robustness", "benchmarks", benchmark]
        runs = list(as_mapping(unlearn.get(benchmark)).get("methods") or [])
        for index, name in items_of(entry.get("methods")):
            if name not in runs:
                problems.append(
                    not_allowed(
                        [*path, "methods", index],
                        name,
                        f"only a method that unlearn.{benchmark}.methods runs can be attacked "
                        f"({', '.join(runs) or 'none'})",
                    )
                )
        splits = list(as_mapping(config.get("tofu")).get("forget_splits") or [])
        for index, split in items_of(entry.get("splits")):
            if has_trait(benchmark, "per_split") and split not in splits:
                problems.append(
                    not_allowed(
                        [*path, "splits", index],
                        split,
                        f"not a configured split (tofu.forget_splits: {', '.join(splits)})",
                    )
                )
        if "relearn" in entry and not robustness.get("relearn"):
            problems.append(
                f"config key '{key_path([*path, 'relearn'])}' overrides a relearning recipe, "
                "but 'robustness.relearn' (steps, learning_rate, ...) is not set"
            )
    return problems


def evaluate_epoch_problems(config: Mapping[str, Any]) -> list[str]:
    """Evaluated epochs must be saved ones: from 1 to that benchmark's unlearn epochs."""
    unlearn = as_mapping(config.get("unlearn"))
    problems = []
    for benchmark, entry in as_mapping(config.get("evaluate")).items():
        last = int_or_none(as_mapping(unlearn.get(benchmark)).get("epochs"))
        if last is None:
            continue
        for index, epoch in items_of(as_mapping(entry).get("epochs")):
            if int_or_none(epoch) is not None and not 1 <= epoch <= last:
                problems.append(
                    not_allowed(
                        ["evaluate", benchmark, "epochs", index],
                        epoch,
                        f"epoch {epoch} will not exist: unlearn.{benchmark}.epochs is {last}",
                    )
                )
        chosen, evaluated = as_mapping(entry).get("table_epoch"), as_mapping(entry).get("epochs")
        if (
            int_or_none(chosen) is not None
            and isinstance(evaluated, list)
            and chosen not in evaluated
        ):
            problems.append(
                not_allowed(
                    ["evaluate", benchmark, "table_epoch"],
                    chosen,
                    f"the tables can only use an evaluated epoch: one of {evaluated}",
                )
            )
        for method, own in as_mapping(as_mapping(entry).get("method_table_epochs")).items():
            if (
                int_or_none(own) is not None
                and isinstance(evaluated, list)
                and own not in evaluated
            ):
                problems.append(
                    not_allowed(
                        ["evaluate", benchmark, "method_table_epochs", method],
                        own,
                        f"the tables can only use an evaluated epoch: one of {evaluated}",
                    )
                )
        problems += selection_problems(config, benchmark, as_mapping(entry).get("select"))
    return problems


def selection_problems(config: Mapping[str, Any], benchmark: str, select: Any) -> list[str]:
    """A selection rule reads metrics the benchmark's table shows, and an oracle that exists."""
    if not isinstance(select, Mapping) or benchmark not in BENCHMARKS:
        return []
    shown = table_metrics(benchmark, as_mapping(config.get("wmdp")).get("topics") or ())
    problems = []
    for path, name in (
        (["metric"], select.get("metric")),
        (["constraint", "metric"], as_mapping(select.get("constraint")).get("metric")),
    ):
        if name is not None and name not in shown:
            problems.append(
                not_allowed(
                    ["evaluate", benchmark, "select", *path],
                    name,
                    f"not a metric of {benchmark}'s table: one of {', '.join(shown)}",
                )
            )
    constraint = as_mapping(select.get("constraint"))
    if constraint.get("of") == "oracle" and not BENCHMARKS[benchmark].oracle_role:
        problems.append(
            not_allowed(
                ["evaluate", benchmark, "select", "constraint", "of"],
                "oracle",
                f"{benchmark} has no oracle model: use start",
            )
        )
    return problems


def figure_problems(config: Mapping[str, Any]) -> list[str]:
    """F1 plots runs that exist; F2/F3 need the benchmark's sweep."""
    figures = as_mapping(config.get("figures"))
    problems = []
    geometry = as_mapping(figures.get("geometry"))
    runs = as_mapping(as_mapping(config.get("unlearn")).get(geometry.get("benchmark"))).get(
        "methods"
    )
    if isinstance(runs, list):
        for index, name in items_of(geometry.get("methods")):
            if name not in runs:
                problems.append(
                    not_allowed(
                        ["figures", "geometry", "methods", index],
                        name,
                        f"not run on {geometry['benchmark']}: add it to "
                        f"unlearn.{geometry['benchmark']}.methods or plot one of {runs}",
                    )
                )
    ablation = figures.get("ablation")
    if isinstance(ablation, str) and ablation not in as_mapping(config.get("sweeps")):
        problems.append(
            not_allowed(
                ["figures", "ablation"],
                ablation,
                f"no sweep to plot: add sweeps.{ablation} (methods and a gamma grid)",
            )
        )
    return problems


def architecture_problems(config: Mapping[str, Any]) -> list[str]:
    """Shapes a Llama model needs: whole, even head size; sequences that fit the positions.

    Only the miniature builds its model from `models.architecture`; under source hub the models
    (and any base a target is built from) bring their own shapes.
    """
    if config.get("source") != "miniature":
        return []
    models = as_mapping(config.get("models"))
    arch = as_mapping(models.get("architecture"))
    hidden, heads = (
        int_or_none(arch.get("hidden_size")),
        int_or_none(arch.get("num_attention_heads")),
    )
    problems = []
    if hidden and heads and (hidden % heads or (hidden // heads) % 2):
        problems.append(
            not_allowed(
                ["models", "architecture", "hidden_size"],
                hidden,
                f"must be a multiple of 2 * num_attention_heads ({2 * heads}), so that every "
                "head has the same even size (rotary embeddings rotate pairs of dimensions)",
            )
        )
    positions = int_or_none(arch.get("max_position_embeddings"))
    lengths = [(["models", stage, "max_length"], as_mapping(models.get(stage)).get("max_length"))
               for stage in ("pretrain", "finetune")]  # fmt: skip
    for benchmark, entry in as_mapping(config.get("unlearn")).items():
        entry = as_mapping(entry)
        lengths.append((["unlearn", benchmark, "max_length"], entry.get("max_length")))
        lengths += [
            (["unlearn", benchmark, "forget_lengths", topic], value)
            for topic, value in as_mapping(entry.get("forget_lengths")).items()
        ]
    for path, value in lengths:
        length = int_or_none(value)
        if positions and length and length > positions:
            problems.append(
                not_allowed(
                    path,
                    length,
                    f"must be <= models.architecture.max_position_embeddings ({positions}), the "
                    "longest sequence the model has positions for",
                )
            )
    return problems


def non_finite_problems(value: Any, path: list[str | int] | None = None) -> list[str]:
    """NaN and infinity anywhere (YAML's .nan / .inf parse as floats the schema accepts)."""
    path = path or []
    if isinstance(value, float) and not math.isfinite(value):
        return [not_allowed(path, value, "must be a finite number (not NaN or infinity)")]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in non_finite_problems(v, [*path, k])]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in non_finite_problems(v, [*path, i])]
    return []
