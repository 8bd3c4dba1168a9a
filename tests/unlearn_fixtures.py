"""Tiny models, data and method configs shared by the unlearning tests and the DDP worker."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bilevel_unlearning.models.encoding import Example
from bilevel_unlearning.unlearn.data import UnlearnData
from bilevel_unlearning.unlearn.loop import LoopSettings, Unlearner
from bilevel_unlearning.unlearn.objectives import Objective

VOCAB, LENGTH = 64, 12


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def examples(count: int, seed: int) -> tuple[Example, ...]:
    """Equal-length sequences (no padding), so per-micro-batch means average exactly."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (count, LENGTH), generator=generator).tolist()
    return tuple(Example(tuple(row), tuple(row)) for row in ids)


def data(topics: int = 1, forget_examples: int = 8) -> UnlearnData:
    forget = tuple(examples(forget_examples, t) for t in range(topics))
    return UnlearnData(forget, examples(8, 100), pad_id=0)


def method(name: str) -> dict:
    return {
        "ga": {"forget_loss": "ga"},
        "ga_gdr": {"forget_loss": "ga", "retain_loss": "nll", "rule": "weighted_sum", "gamma": 1.0},
        "npo": {"forget_loss": "npo", "beta": 0.1},
        "npo_gdr": {
            "forget_loss": "npo",
            "retain_loss": "nll",
            "rule": "weighted_sum",
            "gamma": 1.0,
            "beta": 0.1,
        },
        "npo_klr": {
            "forget_loss": "npo",
            "retain_loss": "kl",
            "rule": "weighted_sum",
            "gamma": 1.0,
            "beta": 0.1,
        },
        "simnpo": {
            "forget_loss": "simnpo",
            "retain_loss": "nll",
            "rule": "weighted_sum",
            "gamma": 1.0,
            "beta": 0.7,
            "delta": 0.0,
        },
        "blur_npo": {
            "forget_loss": "npo",
            "retain_loss": "nll",
            "rule": "blur",
            "gamma": 1.0,
            "beta": 0.1,
        },
        "blur_reversed": {
            "forget_loss": "npo",
            "retain_loss": "nll",
            "rule": "blur_reversed",
            "gamma": 1.0,
            "beta": 0.1,
        },
        "task_vector": {"forget_loss": "nll", "negation": 5.0},
        "whp": {"forget_loss": "whp", "reinforcement": 1.0, "reinforce_epochs": 2},
        "rmu": {
            "forget_loss": "rmu",
            "retain_loss": "rmu",
            "rule": "weighted_sum",
            "gamma": 100.0,
            "layers": [0, 1],
            "steering_coefficient": 6.5,
        },
        "blur_rmu": {
            "forget_loss": "rmu",
            "retain_loss": "rmu",
            "rule": "blur",
            "alpha": 100.0,
            "layers": [0, 1],
            "steering_coefficient": 6.5,
        },
    }[name]


def unlearner(
    name: str,
    out: Path,
    topics: int = 1,
    forget_examples: int = 8,
    overrides: dict | None = None,
    sharded: bool = False,
    **settings,
) -> Unlearner:
    """A run of method `name` (its config updated by `overrides`); its fingerprint is the
    method config and loop settings, as the unlearn job's includes them."""
    model = tiny_model()
    config = {**method(name), **(overrides or {})}
    # WHP's reinforced model is the target trained further; any other frozen model serves here
    reinforced = tiny_model(seed=1) if config["forget_loss"] == "whp" else None
    objective = Objective(config, copy.deepcopy(model), reinforced)
    loop = LoopSettings(**{"epochs": 1, "learning_rate": 1e-3, "batch_size": 4, **settings})
    fingerprint = {"method": config, "settings": dataclasses.asdict(loop)}
    return Unlearner(
        model,
        objective,
        data(topics, forget_examples),
        loop,
        out,
        fingerprint=fingerprint,
        sharded=sharded,
    )


def weights(unlearner: Unlearner) -> dict[str, torch.Tensor]:
    model = unlearner.accelerator.unwrap_model(unlearner.model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
