"""Which runs and evaluations the config asks for: the workflow's plan, as pure functions.

A run is one unlearning job: a method, on a benchmark, with the benchmark's settings (plus
the TOFU split, the WMDP topics, and a swept gamma). Rows of the tables are runs at an epoch,
or reference models (start model and oracle) at epoch 0, meaning "not unlearned".
The workflow (rules/common.smk) and the reports read the same plan from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bilevel_unlearning.benchmarks import BENCHMARKS
from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.data.layout import RECORDS_PER_ENTITY, TOFU_RETAIN_OF
from bilevel_unlearning.data.miniature import records_per_entity

# The model each family's unlearning starts from, and its oracle (what it should approach).
START_ROLE = {b.family: b.start_role for b in BENCHMARKS.values()}
ORACLE_ROLE = {b.family: b.oracle_role for b in BENCHMARKS.values()}


def family(benchmark: str) -> str:
    """muse_news and muse_books share MUSE's settings and metrics."""
    return bench(benchmark).family


@dataclass(frozen=True)
class Run:
    """One unlearning job: which method, its parameters, and the benchmark's settings."""

    method: str
    params: Mapping[str, Any]
    settings: Mapping[str, Any]
    split: str | None = None
    gamma: float | None = field(default=None)
    seed: int | None = None  # an extra seed of the `seeds` dimension; None: the benchmark's own


def run_name(
    method: str, gamma: float | None = None, split: str | None = None, seed: int | None = None
) -> str:
    """blur_npo, blur_npo-gamma0.5, npo_gdr-gamma4.0, ga_gdr-forget05, npo-seed1,
    ga_gdr-seed1-forget05: readable, and lossless: the gamma is written as Python's shortest
    repr that reads back to the same float, so two different gammas never share a name (4.0
    and 4.0000001 stay apart). The benchmark's own seed has no suffix, so a config with one
    seed names (and reruns) nothing new."""
    name = method if gamma is None else f"{method}-gamma{float(gamma)!r}"
    name = name if seed is None else f"{name}-seed{seed}"
    return name if split is None else f"{name}-{split}"


SEED_SUFFIX = re.compile(r"-seed(\d+)(?=-|$)")


def seedless_row(row: str) -> str:
    """A row's name without its seed suffix: the table row its seeds are gathered into."""
    return SEED_SUFFIX.sub("", row)


def seed_rows(row: str, seeds: Sequence[int | None], suffix: str = "") -> list[str]:
    """The rows of a run's seeds (extra_seeds): the row (without its split suffix) with
    -seed<N> for every seed but the own one, then the split suffix."""
    return [row + ("" if seed is None else f"-seed{seed}") + suffix for seed in seeds]


def own_seed(config: Mapping[str, Any], benchmark: str) -> int:
    """The benchmark's unlearning seed: unlearn.<b>.seed (the authors': 42 on MUSE), else the
    top-level seed."""
    return int(config["unlearn"][benchmark].get("seed", config["seed"]))


def extra_seeds(config: Mapping[str, Any], benchmark: str) -> list[int | None]:
    """The seed suffix of each repetition of a run: None for the benchmark's own seed, then
    every other seed of `seeds` (absent: the own seed alone)."""
    own = own_seed(config, benchmark)
    listed = [int(s) for s in config.get("seeds") or [own]]
    return [None if s == own else s for s in listed]


def _splits(config: Mapping[str, Any], benchmark: str) -> list[str | None]:
    return list(config["tofu"]["forget_splits"]) if bench(benchmark).per_split else [None]


def _settings(config: Mapping[str, Any], benchmark: str, split: str | None) -> dict[str, Any]:
    """The benchmark's unlearn entry without its method list (adding a method reruns nothing)."""
    entry = config["unlearn"][benchmark]
    settings = {k: v for k, v in entry.items() if k not in ("methods", "method_overrides")}
    if bench(benchmark).topics:
        settings["topics"] = list(config["wmdp"]["topics"])
    if split is not None:
        settings.update(forget_split=split, retain_split=TOFU_RETAIN_OF[split])
        settings.update(chat_settings(config))
    return settings


def chat_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """TOFU's chat format (system prompt, template date): every stage that formats a question
    (fine-tuning, unlearning, evaluation, sanity) receives the same."""
    tofu = config.get("tofu", {})
    return {key: tofu[key] for key in ("system_prompt", "chat_date") if key in tofu}


def sweep_points(config: Mapping[str, Any], benchmark: str) -> list[tuple[str, float, str]]:
    """(method, gamma, run name) of every point of the benchmark's gamma sweep.

    A point at the method's own gamma is the method's plain run when that run exists anyway,
    so the grid never trains the same model twice.
    """
    sweep = config.get("sweeps", {}).get(benchmark)
    if not sweep:
        return []
    listed = set(config["unlearn"][benchmark]["methods"])
    points = []
    for method in sweep["methods"]:
        own = config["methods"][method].get("gamma", 1.0)
        for gamma in sweep["gamma"]:
            plain = method in listed and float(gamma) == float(own)
            points.append((method, float(gamma), method if plain else run_name(method, gamma)))
    return points


def unlearn_runs(config: Mapping[str, Any], benchmark: str) -> dict[str, Run]:
    """Every unlearning run of a benchmark: its listed methods, then its sweep points.

    Two runs never share a name: a second one would silently replace the first, so that is
    an error naming both (config validation rejects the configs that could cause it)."""
    runs: dict[str, Run] = {}

    def add(name: str, run: Run) -> None:
        if name in runs:
            raise ValueError(
                f"{benchmark}: two runs are named {name!r} ({runs[name].method} and "
                f"{run.method}); make the sweep's gamma values or the method names distinct"
            )
        runs[name] = run

    for seed in extra_seeds(config, benchmark):
        for split in _splits(config, benchmark):
            settings = _settings(config, benchmark, split)
            if seed is not None:
                settings["seed"] = seed
            for method in config["unlearn"][benchmark]["methods"]:
                params = method_params(config, benchmark, method)
                name = run_name(method, split=split, seed=seed)
                add(name, Run(method, params, settings, split, seed=seed))
            for method, gamma, name in sweep_points(config, benchmark):
                if name != method:
                    params = {**method_params(config, benchmark, method), "gamma": gamma}
                    run = Run(method, params, settings, split, gamma, seed)
                    add(run_name(method, gamma, split, seed), run)
    return runs


def method_params(config: Mapping[str, Any], benchmark: str, method: str) -> dict[str, Any]:
    """A method's definition with its benchmark's overrides (unlearn.<b>.method_overrides):
    one name, one table row, benchmark-specific values (SimNPO's beta on Books, the MUSE
    forms of NPO and KL)."""
    overrides = config["unlearn"][benchmark].get("method_overrides", {}).get(method, {})
    return {**config["methods"][method], **overrides}


def reference_models(config: Mapping[str, Any], benchmark: str) -> dict[str, str]:
    """Reference rows -> model role: the start model and the oracle (per TOFU split)."""
    start, oracle = bench(benchmark).start_role, bench(benchmark).oracle_role
    if not bench(benchmark).per_split:
        return {start: start, **({oracle: oracle} if oracle else {})}
    refs = {}
    for split in config["tofu"]["forget_splits"]:
        refs[f"{start}-{split}"] = start
        refs[f"{oracle}-{split}"] = TOFU_RETAIN_OF[split]
    return refs


def reference_rows(config: Mapping[str, Any], benchmark: str) -> list[tuple[str, int]]:
    """(row, epoch) of the reference models' evaluations: each at epoch 0, before unlearning."""
    return [(ref, 0) for ref in reference_models(config, benchmark)]


def oracle_row(benchmark: str, row: str) -> str | None:
    """The oracle row whose evaluation a row's metrics need (PrivLeak's AUC, TOFU's KS test).

    None for the oracle itself and on WMDP, which has no oracle.
    """
    oracle = bench(benchmark).oracle_role
    if oracle is None:
        return None
    if bench(benchmark).per_split:
        oracle = f"{oracle}-{row_split(benchmark, row)}"
    return None if row == oracle else oracle


def retain_log_file(config: Mapping[str, Any], benchmark: str, row: str) -> str | None:
    """The published retain-model log a TOFU row's forget quality reads (config
    tofu.forget_quality_reference: retain_logs, source hub), else None (the oracle's own
    evaluation): <results>/tofu/retain_logs/<forget split>.json."""
    if not bench(benchmark).per_split or config["source"] != "hub":
        return None
    if config["tofu"].get("forget_quality_reference", "oracle") != "retain_logs":
        return None
    return f"{config['results_dir']}/{benchmark}/retain_logs/{row_split(benchmark, row)}.json"


def row_split(benchmark: str, row: str) -> str | None:
    """The TOFU forget split a row is evaluated on (the suffix of its name)."""
    return row.rsplit("-", 1)[1] if bench(benchmark).per_split else None


def evaluations(config: Mapping[str, Any], benchmark: str) -> list[tuple[str, int]]:
    """(row, epoch) of every evaluation: reference models at 0, runs at the configured epochs."""
    rows = reference_rows(config, benchmark)
    epochs = config["evaluate"][benchmark]["epochs"]
    rows += [(run, e) for run in unlearn_runs(config, benchmark) for e in epochs]
    return rows


def evaluation_settings(config: Mapping[str, Any], benchmark: str, row: str) -> dict[str, Any]:
    """What an evaluation job reads: the benchmark family's metric settings and batch size."""
    kind = family(benchmark)
    settings = {**config[kind], "batch_size": config["evaluate"][benchmark].get("batch_size", 32)}
    if bench(benchmark).per_split:
        settings.pop("forget_splits")
        settings["forget_split"] = row_split(benchmark, row)
    return settings


# ------------------------------------------------------------------ tables and attacks


def table_epoch(config: Mapping[str, Any], benchmark: str, method: str | None = None) -> int:
    """The checkpoint a table row uses: the method's own (method_table_epochs), else the
    benchmark's table_epoch, else the last evaluated epoch."""
    entry = config["evaluate"][benchmark]
    default = entry.get("table_epoch", max(entry["epochs"]))
    return entry.get("method_table_epochs", {}).get(method, default)


def table_rows(config: Mapping[str, Any], benchmark: str) -> list[tuple[str, int]]:
    """(row, epoch) of every evaluation a paper table reads for a benchmark: the reference
    rows at 0, then each listed method (on TOFU per forget split; with every seed of `seeds`,
    gathered into one row by seedless_row) at its table epoch; never the sweep points
    (figures F2/F3 read those)."""
    rows = reference_rows(config, benchmark)
    for method in config["unlearn"][benchmark]["methods"]:
        epoch = table_epoch(config, benchmark, method)
        rows += [
            (run_name(method, split=split, seed=seed), epoch)
            for seed in extra_seeds(config, benchmark)
            for split in _splits(config, benchmark)
        ]
    return rows


NO_ATTACK = "none"


def eval_path(
    results: str, benchmark: str, row: str, epoch: int | str, attack: str = NO_ATTACK
) -> str:
    """Where an evaluation's result lives (the evaluate rules' output, the report's input):
    <results>/<benchmark>/eval/<row>/<attack>/epoch_<k>.json; attack `none`: the model itself."""
    return f"{results}/{benchmark}/eval/{row}/{attack}/epoch_{epoch}.json"


def attack_names(config: Mapping[str, Any], benchmark: str | None = None) -> list[str]:
    """relearn_s{N} for each relearning length (the benchmark's own `relearn.steps` if it sets
    them), relearn_heldout_s{N} beside each where `relearn.heldout` is on, quantize_int{b} for
    each bit width; without a benchmark, every benchmark's."""
    robustness = config.get("robustness") or {}
    if benchmark is None:
        names = [a for b in attacked_benchmarks(config) for a in attack_names(config, b)]
        return list(dict.fromkeys(names))
    steps = relearn_steps(config, benchmark)
    names = [attack_name("relearn", n) for n in steps]
    if steps and relearn_recipe(config, benchmark).get("heldout"):
        names += [attack_name(HELDOUT_RELEARN, n) for n in steps]
    bits = (robustness.get("quantize") or {}).get("bits", [])
    return names + [attack_name("quantize", b) for b in bits]


# relearn_heldout: the attacker relearns one half of the forget facts (by entity or document)
# and is scored on the other half only (attack.heldout)
HELDOUT_RELEARN = "relearn_heldout"
# relearn_s<steps>, relearn_heldout_s<steps>, quantize_int<bits>
ATTACK_SIZE_PREFIX = {"relearn": "s", HELDOUT_RELEARN: "s", "quantize": "int"}


def attack_name(kind: str, size: int) -> str:
    """An attack's name, by its kind and size: relearn_s8 (8 steps), quantize_int4 (4 bits)."""
    return f"{kind}_{ATTACK_SIZE_PREFIX[kind]}{size}"


def attack_kind(attack: str) -> str:
    """What an attack name does: relearn (relearn_s<N>), relearn_heldout
    (relearn_heldout_s<N>) or quantize (quantize_int<b>)."""
    return attack.rpartition("_")[0]


def attack_size(attack: str) -> int:
    """An attack's size: the relearning steps, or the bits of quantized weights."""
    kind, _, size = attack.rpartition("_")
    return int(size.removeprefix(ATTACK_SIZE_PREFIX[kind]))


def heldout_part(benchmark: str, row: str) -> str:
    """Which held-out split a row's held-out relearning uses: its TOFU forget split, else the
    benchmark's one (`forget`)."""
    return row_split(benchmark, row) if bench(benchmark).per_split else "forget"


def heldout_split_path(results: str, benchmark: str, part: str) -> str:
    """<results>/<benchmark>/attack/heldout_split/<part>.json (part: heldout_part)."""
    return f"{results}/{benchmark}/attack/heldout_split/{part}.json"


def relearn_steps(config: Mapping[str, Any], benchmark: str) -> list[int]:
    """A benchmark's relearning lengths (its own `relearn.steps` if set); none without the
    relearning attack."""
    if not (config.get("robustness") or {}).get("relearn"):
        return []
    return [int(n) for n in relearn_recipe(config, benchmark)["steps"]]


def relearn_recipe(config: Mapping[str, Any], benchmark: str) -> dict[str, Any]:
    """The relearning recipe of a benchmark: its own `relearn` keys over the shared ones."""
    shared = config["robustness"]["relearn"]
    return {**shared, **_attack_entry(config, benchmark).get("relearn", {})}


def _attack_entry(config: Mapping[str, Any], benchmark: str) -> Mapping[str, Any]:
    return ((config.get("robustness") or {}).get("benchmarks") or {}).get(benchmark) or {}


def attacked_benchmarks(config: Mapping[str, Any]) -> list[str]:
    """The configured benchmarks whose rows are attacked (none without an attack)."""
    robustness = config.get("robustness") or {}
    if not (robustness.get("relearn") or robustness.get("quantize")):
        return []
    return [b for b in robustness.get("benchmarks") or {} if b in config["benchmarks"]]


def attacked_rows(config: Mapping[str, Any], benchmark: str) -> list[tuple[str, int]]:
    """(row, epoch) of every attacked model: the reference rows at 0 (unless `references` is
    false) and each listed method (default the benchmark's own) at its table epoch; on TOFU
    only the chosen forget splits (default all). Never the sweep points."""
    entry = _attack_entry(config, benchmark)
    splits = entry.get("splits") or _splits(config, benchmark)
    references = reference_models(config, benchmark) if entry.get("references", True) else {}
    rows = [
        (ref, 0)
        for ref in references
        if not bench(benchmark).per_split or row_split(benchmark, ref) in splits
    ]
    for method in entry.get("methods") or config["unlearn"][benchmark]["methods"]:
        for split in splits:
            rows.append((run_name(method, split=split), table_epoch(config, benchmark, method)))
    return rows


def attacked_evaluations(config: Mapping[str, Any], benchmark: str) -> list[tuple[str, str, int]]:
    """(row, attack, epoch) of every evaluation of an attacked model."""
    return [
        (row, attack, epoch)
        for row, epoch in attacked_rows(config, benchmark)
        for attack in attack_names(config, benchmark)
    ]


def attack_settings(
    config: Mapping[str, Any], benchmark: str, attack: str, row: str
) -> dict[str, Any]:
    """What an attack job reads: its kind and recipe (the benchmark's relearn overrides merged
    over the shared ones), and for relearning what selects the forget data (TOFU's split and
    chat format, WMDP's topics)."""
    robustness = config["robustness"]
    kind, size = attack_kind(attack), attack_size(attack)
    if kind == "quantize":
        recipe = {k: v for k, v in robustness["quantize"].items() if k != "bits"}
        return {"kind": kind, **recipe, "bits": size}
    recipe = relearn_recipe(config, benchmark)
    recipe = {k: v for k, v in recipe.items() if k not in ("steps", "heldout")}
    settings = {"kind": kind, **recipe, "steps": size}
    if bench(benchmark).per_split:
        settings.update(chat_settings(config))
    return {**settings, **forget_selection(config, benchmark, row_split(benchmark, row))}


def forget_selection(
    config: Mapping[str, Any], benchmark: str, split: str | None
) -> dict[str, Any]:
    """What selects the forget data: TOFU's forget split, WMDP's topics."""
    if bench(benchmark).per_split:
        return {"forget_split": split}
    if bench(benchmark).topics:
        return {"topics": list(config["wmdp"]["topics"])}
    return {}


def heldout_settings(config: Mapping[str, Any], benchmark: str, part: str) -> dict[str, Any]:
    """What a held-out split (heldout_part) reads (attack.heldout): the forget data's
    selection and the records per entity (the miniature's from its generator, the real
    benchmarks' layout)."""
    if config["source"] == "miniature":
        size = records_per_entity(family(benchmark), config["miniature"])
    else:
        size = RECORDS_PER_ENTITY[family(benchmark)]
    split = part if bench(benchmark).per_split else None
    return {"group_size": size, **forget_selection(config, benchmark, split)}
