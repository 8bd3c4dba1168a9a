"""Which model each benchmark needs and what it is trained on (the miniature's recipe).

MUSE: target = base fine-tuned on forget + retain, retrain oracle = base on retain only.
TOFU: full = base on every author's QA, retainNN = base on the retain split of each forget split.
WMDP: original = base on both hazardous topics and the general text (the wikitext analogue).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.data.layout import TOFU_RETAIN_OF
from bilevel_unlearning.io import read_jsonl

if TYPE_CHECKING:  # the workflow plans with this module: no torch at import
    from bilevel_unlearning.models.encoding import ChatFormat, Example

MUSE_SOURCES = {
    "target": ("raw/forget.jsonl", "raw/retain1.jsonl", "raw/retain2.jsonl"),
    "retrain": ("raw/retain1.jsonl", "raw/retain2.jsonl"),
}
WMDP_SOURCES = {
    "original": (
        "corpora/bio-forget-corpus.jsonl",
        "corpora/cyber-forget-corpus.jsonl",
        "wikitext/wikitext-2-raw-v1-test.jsonl",
    ),
}


# Roles trained from fixed files (TOFU's roles are its splits: role_sources)
FIXED_SOURCES = {"muse": MUSE_SOURCES, "wmdp": WMDP_SOURCES}


def model_roles(benchmark: str, config: dict[str, Any]) -> list[str]:
    """The reference models of a benchmark (targets and oracles) that the models stage makes:
    TOFU's full model and the retain oracle of each configured forget split."""
    spec = bench(benchmark)
    if spec.per_split:
        retains = (TOFU_RETAIN_OF[s] for s in config["tofu"]["forget_splits"])
        return [spec.start_role, *retains]
    return list(FIXED_SOURCES[spec.family])


def role_sources(benchmark: str, role: str) -> tuple[str, ...]:
    """Data files (relative to the benchmark's data folder) a role is trained on."""
    spec = bench(benchmark)
    return (f"{role}.jsonl",) if spec.per_split else FIXED_SOURCES[spec.family][role]


# ------------------------------------------------------ source hub: downloaded or built here


def hub_models(config: Mapping[str, Any], benchmark: str) -> dict[str, Mapping[str, Any]]:
    """Role -> `hub` entry of each model a benchmark needs (source hub): {repo: ...} is
    downloaded, {build_from: ...} fine-tuned here from that base model."""
    return {r: config["hub"][benchmark]["models"][r] for r in model_roles(benchmark, dict(config))}


def base_model_dir(results: str, model: Mapping[str, Any]) -> str:
    """Where the base model a `build_from` entry names is downloaded (shared by every role and
    benchmark built from it): <results>/base_models/<owner>--<name>[--<revision>]."""
    name = "--".join(PurePosixPath(model["build_from"]).parts)
    if model.get("revision"):
        name += "--" + re.sub(r"[^A-Za-z0-9._-]", "_", model["revision"])
    return f"{results}/base_models/{name}"


def built_models(config: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(benchmark, role) -> base model folder, for every model fine-tuned from a hub base
    (none under the miniature, whose models are all made here from its own base)."""
    if config["source"] != "hub":
        return {}
    return {
        (b, role): base_model_dir(config["results_dir"], model)
        for b in config["benchmarks"]
        for role, model in hub_models(config, b).items()
        if model.get("build_from")
    }


def base_models(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Base model folder -> the `build_from` entry it is downloaded for (each base once)."""
    if config["source"] != "hub":
        return {}
    return {
        base_model_dir(config["results_dir"], model): model
        for b in config["benchmarks"]
        for model in hub_models(config, b).values()
        if model.get("build_from")
    }


def built_pattern(built: Mapping[tuple[str, str], str]) -> str:
    """A benchmark wildcard pattern matching only where a role is built (a lookahead on the
    rest of the path), so the fine-tuning and download rules never claim the same folder."""
    return "|".join(f"{re.escape(b)}(?=/models/{re.escape(role)}$)" for b, role in built)


def forget_sources(benchmark: str, settings: dict[str, Any]) -> tuple[str, ...]:
    """The forget data of a benchmark (what unlearning removes and the relearning attack
    trains on): MUSE's forget corpus, a TOFU forget split's QA, WMDP's topics' forget corpora."""
    spec = bench(benchmark)
    if spec.per_split:
        return (f"{settings['forget_split']}.jsonl",)
    if spec.topics:
        return tuple(f"corpora/{t}-forget-corpus.jsonl" for t in settings["topics"])
    return ("raw/forget.jsonl",)


def examples_of(
    benchmark: str,
    records: list[dict[str, Any]],
    tokenizer: Any,
    max_length: int,
    chat: ChatFormat | None = None,
) -> list[Example]:
    """Records as training examples: TOFU's QA in its chat format (default: no system
    prompt), documents elsewhere."""
    from bilevel_unlearning.models.encoding import PLAIN_CHAT, qa_example, text_example

    chat = chat or PLAIN_CHAT
    if bench(benchmark).chat_qa:
        return [
            qa_example(tokenizer, r["question"], r["answer"], max_length, chat) for r in records
        ]
    return [text_example(tokenizer, r["text"], max_length) for r in records]


def training_examples(
    benchmark: str,
    role: str,
    data_dir: Path,
    tokenizer: Any,
    max_length: int,
    chat: ChatFormat | None = None,
) -> list[Example]:
    """Tokenized training examples of one role (TOFU's in the chat format it is evaluated in)."""
    records = [r for source in role_sources(benchmark, role) for r in read_jsonl(data_dir / source)]
    return examples_of(benchmark, records, tokenizer, max_length, chat)
