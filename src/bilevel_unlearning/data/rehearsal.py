"""The rehearsal hub: every dataset and model repo a hub config downloads, hub-shaped and
filled with miniature content (rehearsal_data.py, rehearsal_models.py), in the layout of
`hub.mirror`, plus the gated WMDP bio file where the config's topics need it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bilevel_unlearning.data import miniature, rehearsal_data, rehearsal_models
from bilevel_unlearning.data.layout import GENERAL


def model_repos(config: Mapping[str, Any]) -> dict[str, bool]:
    """Repo id -> whether its weights are needed (a tokenizer-only source needs none)."""
    repos: dict[str, bool] = {}
    for benchmark in config["benchmarks"]:
        for model in config["hub"][benchmark]["models"].values():
            for key in ("repo", "build_from"):
                if model.get(key):
                    repos[model[key]] = True
            if model.get("tokenizer"):
                repos.setdefault(model["tokenizer"], False)
    return repos


def write_rehearsal_hub(
    config: Mapping[str, Any], mirror: Path, bio_forget_file: Path
) -> list[str]:
    """Write the mirror (and the gated bio file); returns the repo ids written."""
    seed, sizes = config["seed"], config["miniature"]
    topics = config["wmdp"]["topics"]
    repos = rehearsal_data.write_dataset_repos(
        mirror, config["benchmarks"], config["hub"], topics, seed, sizes
    )
    if "wmdp" in config["benchmarks"] and "bio" in topics:
        rehearsal_data.write_bio_forget_file(bio_forget_file, seed, sizes)
    texts = [r["text"] for r in miniature.build(GENERAL, seed, sizes)["corpus.jsonl"]]
    for index, (repo, weights) in enumerate(sorted(model_repos(config).items())):
        rehearsal_models.write_model_repo(mirror, repo, texts, seed + index, weights)
        repos.append(repo)
    return repos
