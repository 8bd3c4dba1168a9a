"""Cross-field rules: what a JSON Schema cannot express (method references, epochs that must
exist, rule/loss pairings, model shapes, hub entries)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bilevel_unlearning import methods
from bilevel_unlearning.benchmarks import BENCHMARKS
from bilevel_unlearning.config.messages import (
    key_path,
    not_allowed,
    one_of,
    show,
    strict_integer,
    suggestion,
)

RULES_NEEDING_RETAIN = tuple(methods.RULES)

# Method hyperparameters and the losses that read them (the method catalog): a value elsewhere
# would be silently ignored, which is almost always a copy-paste mistake.
HYPERPARAMETER_USERS: dict[str, tuple[str, tuple[str, ...]]] = methods.key_users()


# --------------------------------------------------------------------------------------------
# Cross-field rules. They read the config defensively: a value of the wrong type was already
# reported by the schema, so here it is skipped rather than crashed on.


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if strict_integer(None, value) else None


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
    for _, name in _items(config.get("benchmarks")):
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
        for index, name in _items(names)
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
        for index, name in _items(names):
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


def has_trait(name: str, trait: str) -> bool:
    """Whether a benchmark has a trait of benchmarks.Benchmark (per_split, topics); False for
    a name that is not a benchmark (the schema names it)."""
    known = BENCHMARKS.get(name)
    return bool(known and getattr(known, trait))


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
        for index, name in _items(entry.get("methods")):
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
        for index, split in _items(entry.get("splits")):
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
        last = _int(as_mapping(unlearn.get(benchmark)).get("epochs"))
        if last is None:
            continue
        for index, epoch in _items(as_mapping(entry).get("epochs")):
            if _int(epoch) is not None and not 1 <= epoch <= last:
                problems.append(
                    not_allowed(
                        ["evaluate", benchmark, "epochs", index],
                        epoch,
                        f"epoch {epoch} will not exist: unlearn.{benchmark}.epochs is {last}",
                    )
                )
        chosen, evaluated = as_mapping(entry).get("table_epoch"), as_mapping(entry).get("epochs")
        if _int(chosen) is not None and isinstance(evaluated, list) and chosen not in evaluated:
            problems.append(
                not_allowed(
                    ["evaluate", benchmark, "table_epoch"],
                    chosen,
                    f"the tables can only use an evaluated epoch: one of {evaluated}",
                )
            )
        for method, own in as_mapping(as_mapping(entry).get("method_table_epochs")).items():
            if _int(own) is not None and isinstance(evaluated, list) and own not in evaluated:
                problems.append(
                    not_allowed(
                        ["evaluate", benchmark, "method_table_epochs", method],
                        own,
                        f"the tables can only use an evaluated epoch: one of {evaluated}",
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
        for index, name in _items(geometry.get("methods")):
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


def method_problems(config: Mapping[str, Any]) -> list[str]:
    """Rules on how a method's losses, rule and hyperparameters fit together."""
    problems = []
    num_layers = _int(
        as_mapping(as_mapping(config.get("models")).get("architecture")).get("num_hidden_layers")
    )
    check_layers = config.get("source") == "miniature" and num_layers is not None
    for name, method in as_mapping(config.get("methods")).items():
        if not isinstance(method, Mapping):
            continue
        problems += single_method_problems(name, method)
        if check_layers:
            problems += layer_problems(name, method, num_layers)  # type: ignore[arg-type]
    return problems + method_override_problems(config)


def method_override_problems(config: Mapping[str, Any]) -> list[str]:
    """unlearn.<benchmark>.method_overrides: of defined methods (an override of a method the
    benchmark does not list is kept for when it does), and the method with its overrides must
    still be a valid method."""
    problems = []
    methods = as_mapping(config.get("methods"))
    for benchmark, entry in as_mapping(config.get("unlearn")).items():
        for name, changes in as_mapping(as_mapping(entry).get("method_overrides")).items():
            path = ["unlearn", benchmark, "method_overrides", name]
            if name not in methods:
                problems.append(
                    not_allowed(path, name, "no such method: define it under `methods`")
                    + suggestion(name, list(methods))
                )
            elif isinstance(methods.get(name), Mapping) and isinstance(changes, Mapping):
                merged = {**methods[name], **changes}
                problems += [
                    f"{p} (with {key_path(path)})" for p in single_method_problems(name, merged)
                ]
    return problems


def single_method_problems(name: str, method: Mapping[str, Any]) -> list[str]:
    """Pairing rules within one method definition."""
    base = ["methods", name]
    forget, retain, rule = (method.get(k) for k in ("forget_loss", "retain_loss", "rule"))
    problems = []
    if rule is not None and retain is None:
        problems.append(
            f"config key '{key_path([*base, 'retain_loss'])}' is missing: rule '{rule}' "
            "combines the forget and retain gradients, so the method needs a retain_loss "
            "(one of: nll, kl, rmu)"
        )
    if retain is not None and rule is None:
        problems.append(
            f"config key '{key_path([*base, 'rule'])}' is missing: retain_loss '{retain}' "
            f"needs a rule that combines it with the forget loss ({one_of(RULES_NEEDING_RETAIN)})"
        )
    if rule == "blur" and ("gamma" in method) == ("alpha" in method):
        problems.append(
            f"config key '{key_path([*base, 'gamma'])}': rule 'blur' needs exactly one of gamma "
            "or alpha (the RMU form's retain weight), not "
            + ("both" if "gamma" in method else "neither")
        )
    if rule in ("weighted_sum", "blur_reversed") and "gamma" not in method:
        problems.append(
            f"config key '{key_path([*base, 'gamma'])}' is missing: rule '{rule}' needs gamma"
        )
    if "alpha" in method and rule not in (None, "blur"):
        problems.append(
            not_allowed([*base, "alpha"], method["alpha"], "alpha is read only by rule 'blur'")
        )
    if forget == "nll" and "negation" not in method:
        problems.append(
            f"config key '{key_path([*base, 'negation'])}' is missing: forget_loss 'nll' learns "
            "the forget set, which only unlearns as Task Vector, with negation set (e.g. 5.0)"
        )
    for key in ("reinforcement", "reinforce_epochs"):
        if forget == "whp" and key not in method:
            problems.append(
                f"config key '{key_path([*base, key])}' is missing: forget_loss 'whp' needs "
                "reinforcement and reinforce_epochs"
            )
    form = method.get("baldro")
    for key, needed in (("beta_dv", "dv"), ("sampling_ratio", "group")):
        if key in method and form != needed:
            problems.append(
                not_allowed([*base, key], method[key], f"read only with baldro: {needed}")
            )
    if form == "group" and forget == "rmu":
        problems.append(
            not_allowed(
                [*base, "baldro"],
                form,
                "BalDRO-G ranks samples by their log-likelihood, which RMU's hidden-state loss "
                "does not compute: use baldro: dv with rmu",
            )
        )
    if forget == "rmu" and retain is not None and retain != "rmu":
        problems.append(
            not_allowed(
                [*base, "retain_loss"],
                retain,
                "forget_loss 'rmu' pairs only with retain_loss 'rmu'",
            )
        )
    if retain == "rmu" and forget is not None and forget != "rmu":
        problems.append(
            not_allowed(
                [*base, "retain_loss"],
                retain,
                f"retain_loss 'rmu' pairs only with forget_loss 'rmu', not '{forget}' "
                "(use nll or kl)",
            )
        )
    for key in ("gamma", "alpha"):
        if key in method and rule is None:
            problems.append(
                not_allowed(
                    [*base, key],
                    method[key],
                    f"{key} weighs the retain gradient, but the method has no rule/retain_loss; "
                    "remove it or add both",
                )
            )
    for key, (loss_key, users) in HYPERPARAMETER_USERS.items():
        if key in method and method.get(loss_key) not in users:
            problems.append(
                not_allowed(
                    [*base, key],
                    method[key],
                    f"{key} is only read when {loss_key} is {' or '.join(users)}, "
                    f"and this method's {loss_key} is {show(method.get(loss_key))}",
                )
            )
    return problems


def layer_problems(name: str, method: Mapping[str, Any], num_layers: int) -> list[str]:
    """RMU layer indices must exist in the miniature model."""
    return [
        not_allowed(
            ["methods", name, "layers", index],
            layer,
            f"must be < models.architecture.num_hidden_layers ({num_layers}); "
            "layers are numbered from 0",
        )
        for index, layer in _items(method.get("layers"))
        if _int(layer) is not None and layer >= num_layers
    ]


def architecture_problems(config: Mapping[str, Any]) -> list[str]:
    """Shapes a Llama model needs: whole, even head size; sequences that fit the positions.

    Only the miniature builds its model from `models.architecture`; under source hub the models
    (and any base a target is built from) bring their own shapes.
    """
    if config.get("source") != "miniature":
        return []
    models = as_mapping(config.get("models"))
    arch = as_mapping(models.get("architecture"))
    hidden, heads = _int(arch.get("hidden_size")), _int(arch.get("num_attention_heads"))
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
    positions = _int(arch.get("max_position_embeddings"))
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
        length = _int(value)
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


def reference_model_roles(benchmark: str, config: Mapping[str, Any]) -> list[str]:
    """The models a benchmark needs (the start model and its oracles), as the models stage and
    the download stage name them: bilevel_unlearning.models.recipes.model_roles, without torch."""
    from bilevel_unlearning.data.layout import TOFU_RETAIN_OF
    from bilevel_unlearning.runs import ORACLE_ROLE, START_ROLE, family

    kind = family(benchmark)
    if has_trait(benchmark, "per_split"):
        splits = as_mapping(config.get("tofu")).get("forget_splits")
        oracles = [TOFU_RETAIN_OF[s] for _, s in _items(splits) if s in TOFU_RETAIN_OF]
        return [START_ROLE[kind], *oracles]
    return [START_ROLE[kind], *([ORACLE_ROLE[kind]] if ORACLE_ROLE[kind] else [])]


def hub_problems(config: Mapping[str, Any], known: Sequence[str]) -> list[str]:
    """Source hub: every listed benchmark names its models (each downloaded or built), its
    dataset roles exist, a built model has no general corpus to replay, and the gated WMDP bio
    corpus is given by path when bio is a topic."""
    if config.get("source") != "hub":
        return []
    if "hub" not in config:
        return [
            "config key 'hub' is missing: source 'hub' downloads the benchmarks and models named "
            "there (hub.<benchmark>.models; see config/paper.yaml)"
        ]
    hub = as_mapping(config.get("hub"))
    listed = [b for _, b in _items(config.get("benchmarks")) if b in known]
    problems = [
        f"config key 'hub.{benchmark}' is missing: benchmark '{benchmark}' is listed in "
        "'benchmarks' and source is hub, so 'hub' needs its models "
        f"({', '.join(reference_model_roles(benchmark, config))})"
        for benchmark in listed
        if isinstance(config.get("hub"), Mapping) and benchmark not in hub
    ]
    for benchmark in listed:
        entry = hub.get(benchmark)
        models = as_mapping(as_mapping(entry).get("models"))
        problems += [
            f"config key 'hub.{benchmark}.models.{role}' is missing: {benchmark} needs its {role} "
            "model: {repo: <hub id>} downloads it, {build_from: <hub id of a base model>} "
            "fine-tunes it here"
            for role in reference_model_roles(benchmark, config)
            if isinstance(entry, Mapping) and role not in models
        ]
    for benchmark, entry in hub.items():
        problems += hub_entry_problems(config, benchmark, as_mapping(entry))
    wmdp = as_mapping(config.get("wmdp"))
    topics = wmdp.get("topics")
    if (
        any(has_trait(b, "topics") for b in listed)
        and isinstance(topics, list)
        and "bio" in topics
        and ("bio_forget_file" not in wmdp)
    ):
        problems.append(
            "config key 'wmdp.bio_forget_file' is missing: with source hub and bio among "
            "wmdp.topics, the gated bio forget corpus (bio_remove_dataset.jsonl, obtained by "
            "hand) is read from this path; or leave bio out of wmdp.topics"
        )
    return problems


def hub_entry_problems(
    config: Mapping[str, Any], benchmark: str, entry: Mapping[str, Any]
) -> list[str]:
    """One `hub.<benchmark>` entry: known dataset roles; each model downloaded or built."""
    from bilevel_unlearning.data.hub import DEFAULT_DATASETS

    problems = []
    roles = DEFAULT_DATASETS.get(benchmark, {})
    for role in as_mapping(entry.get("datasets")):
        if roles and role not in roles:
            problems.append(
                not_allowed(
                    ["hub", benchmark, "datasets", role],
                    role,
                    f"{benchmark} reads the dataset roles {', '.join(roles)} only",
                )
            )
    replay = as_mapping(as_mapping(config.get("models")).get("finetune")).get("replay_general")
    for role, model in as_mapping(entry.get("models")).items():
        if not isinstance(model, Mapping):
            continue
        path = key_path(["hub", benchmark, "models", role])
        repo, base = model.get("repo") is not None, model.get("build_from") is not None
        if repo == base:
            problems.append(
                f"config key '{path}' needs exactly one of repo (download this model) or "
                "build_from (fine-tune it here from that base model), not "
                + ("both (set the other to null in an overriding file)" if repo else "neither")
            )
        if base and isinstance(replay, int | float) and replay > 0:
            problems.append(
                not_allowed(
                    ["models", "finetune", "replay_general"],
                    replay,
                    f"must be 0 when a model is built from a hub base ({path}.build_from): "
                    "source hub has no general corpus to replay",
                )
            )
    return problems
