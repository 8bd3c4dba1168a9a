"""Shared fixtures: the miniature benchmarks generated small, a tokenizer trained on them and a
tiny random Llama. Sizes are far below config/config.yaml so every test file stays light."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SEED = 0
REPO = Path(__file__).resolve().parents[1]
ALL_BENCHMARKS = ("general", "muse_news", "muse_books", "tofu", "wmdp")

# The `miniature` config section, shrunk. Each hazard/general relation keeps at least four facts,
# so every cloze question finds three wrong values of the same relation.
SIZES: dict[str, dict[str, int]] = {
    "general": {"entities": 12, "world_facts": 12, "general_questions": 16},
    "muse": {
        "forget_entities": 4,
        "retain_entities": 6,
        "holdout_entities": 4,
        "facts_per_entity": 4,
        "icl_examples": 2,
        "verbmem_prompt_words": 8,
    },
    "tofu": {"authors": 40, "qa_per_author": 4, "perturbed_answers": 3},
    "wmdp": {"facts_per_topic": 12, "retain_documents": 12},
}

TINY_ARCHITECTURE = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 256,
}
TOKENIZER_VOCAB = 512


def shipped_config(*overlays: str) -> dict:
    """config/config.yaml with each named file of config/ merged over it in turn, as
    `snakemake --configfile` merges them (not validated)."""
    import yaml
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for name in overlays:
        update_config(config, yaml.safe_load((REPO / "config" / name).read_text()))
    return config


def generate_all(root: Path, seed: int = SEED, sizes: dict = SIZES) -> Path:
    """Write every benchmark under root/{benchmark} (the layout of results/{benchmark}/data)."""
    from bilevel_unlearning.data import miniature

    for benchmark in ALL_BENCHMARKS:
        miniature.generate(benchmark, seed, sizes, root / benchmark)
    return root


def all_strings(root: Path) -> list[str]:
    """Every string of every JSONL file under root (what the tokenizer stage trains on)."""
    from bilevel_unlearning.models.run import tokenizer_texts

    return tokenizer_texts(sorted(root.rglob("*.jsonl")))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All benchmarks generated once with SEED and SIZES; tests must not modify it."""
    return generate_all(tmp_path_factory.mktemp("miniature"))


@pytest.fixture(scope="session")
def tokenizer(data_root: Path) -> Any:
    from bilevel_unlearning.models.tokenizer import train_tokenizer

    return train_tokenizer(list(all_strings(data_root)), TOKENIZER_VOCAB)


@pytest.fixture(scope="session")
def one_thread() -> None:
    """Keep torch to one thread: a workflow may be running beside the tests."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def tiny_model(tokenizer: Any, one_thread: None) -> Any:
    """A fresh random tiny Llama (hidden 32, 2 layers), in eval mode."""
    from bilevel_unlearning.models.hf import tiny_llama

    return tiny_llama(TINY_ARCHITECTURE, tokenizer, seed=SEED).eval()
