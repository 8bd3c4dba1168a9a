"""Cross-field rules of the `hub` section: the models each benchmark needs and the entries
that name them (source hub)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bilevel_unlearning.config.messages import (
    key_path,
    not_allowed,
)
from bilevel_unlearning.config.values import as_mapping, has_trait, items_of


def reference_model_roles(benchmark: str, config: Mapping[str, Any]) -> list[str]:
    """The models a benchmark needs (the start model and its oracles), as the models stage and
    the download stage name them: bilevel_unlearning.models.recipes.model_roles, without torch."""
    from bilevel_unlearning.data.layout import TOFU_RETAIN_OF
    from bilevel_unlearning.runs import ORACLE_ROLE, START_ROLE, family

    kind = family(benchmark)
    if has_trait(benchmark, "per_split"):
        splits = as_mapping(config.get("tofu")).get("forget_splits")
        oracles = [TOFU_RETAIN_OF[s] for _, s in items_of(splits) if s in TOFU_RETAIN_OF]
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
    listed = [b for _, b in items_of(config.get("benchmarks")) if b in known]
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
