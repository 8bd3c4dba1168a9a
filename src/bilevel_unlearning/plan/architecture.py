"""Model shapes the plan reads: a Llama-like decoder's architecture (from a preset, a hub id
or a config.json), and what a method costs beyond plain fine-tuning (frozen copies, extra
gradients, RMU's few trained layers)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bilevel_unlearning import methods


@dataclass(frozen=True)
class Architecture:
    """What a Llama-like decoder's parameter count and activation size depend on."""

    hidden: int
    intermediate: int
    layers: int
    vocab: int
    heads: int
    kv_heads: int
    tied_embeddings: bool = False
    head_dim: int | None = None

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.head_dim or self.hidden // self.heads)

    @property
    def q_dim(self) -> int:
        return self.heads * (self.head_dim or self.hidden // self.heads)

    def layer_params(self) -> int:
        """One decoder layer: q, k, v, o projections, gated MLP (3 matrices), two RMSNorms."""
        attention = self.hidden * self.q_dim * 2 + self.hidden * self.kv_dim * 2
        mlp = 3 * self.hidden * self.intermediate
        return attention + mlp + 2 * self.hidden

    def params(self) -> int:
        """Embeddings + layers + final norm + LM head (absent when tied to the embeddings)."""
        embeddings = self.vocab * self.hidden
        head = 0 if self.tied_embeddings else embeddings
        return embeddings + self.layers * self.layer_params() + self.hidden + head

    def matmul_params(self) -> int:
        """Parameters that cost FLOPs per token: the embedding lookup does not, the head does."""
        return self.layers * self.layer_params() + self.vocab * self.hidden


PRESETS: dict[str, Architecture] = {
    "llama-2-7b": Architecture(4096, 11008, 32, 32000, 32, 32),
    "mistral-7b": Architecture(4096, 14336, 32, 32000, 32, 8),  # zephyr-7b-beta
    "llama-3.2-1b": Architecture(2048, 8192, 16, 128256, 32, 8, tied_embeddings=True),
}
# Hub ids of the paper's models -> their architecture preset.
ALIASES: dict[str, str] = {
    "meta-llama/llama-2-7b-hf": "llama-2-7b",
    "muse-bench/muse-news_target": "llama-2-7b",
    "muse-bench/muse-news_retrain": "llama-2-7b",
    "muse-bench/muse-books_target": "llama-2-7b",
    "muse-bench/muse-books_retrain": "llama-2-7b",
    "huggingfaceh4/zephyr-7b-beta": "mistral-7b",
    "zephyr-7b-beta": "mistral-7b",
    "mistralai/mistral-7b-v0.1": "mistral-7b",
    "meta-llama/llama-3.2-1b-instruct": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_full": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_retain90": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_retain95": "llama-3.2-1b",
    "open-unlearning/tofu_llama-3.2-1b-instruct_retain99": "llama-3.2-1b",
}


def architecture_from_config(config: Mapping[str, Any]) -> Architecture:
    """An Architecture from a transformers config.json (Llama/Mistral key names)."""
    heads = int(config["num_attention_heads"])
    return Architecture(
        hidden=int(config["hidden_size"]),
        intermediate=int(config["intermediate_size"]),
        layers=int(config["num_hidden_layers"]),
        vocab=int(config["vocab_size"]),
        heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        head_dim=config.get("head_dim"),
    )


def resolve_architecture(model: str | Mapping[str, Any]) -> Architecture:
    """A preset name or hub id, a local model folder (its config.json), or a config dict."""
    if isinstance(model, Mapping):
        return architecture_from_config(model)
    config_file = Path(model) / "config.json"
    if config_file.is_file():
        return architecture_from_config(json.loads(config_file.read_text(encoding="utf-8")))
    key = ALIASES.get(model.lower(), model.lower())
    if key in PRESETS:
        return PRESETS[key]
    raise ValueError(
        f"unknown model {model!r}: not a folder with config.json, not a preset "
        f"({', '.join(PRESETS)}) nor a known hub id ({', '.join(ALIASES)})"
    )


# -- what a method needs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """What a method costs beyond plain fine-tuning, read from its config entry."""

    retain_gradient: bool  # two backward passes and one extra gradient buffer
    frozen_copies: int
    reference_logits_batches: int  # batches whose frozen logits a loss holds
    frozen_forwards: int  # frozen-model forward passes per step (batches)
    rmu_layers: tuple[int, ...] | None  # trains only mlp.down_proj of these layers


def method_needs(method: Mapping[str, Any], architecture: Architecture) -> Needs:
    """Needs of a `methods` config entry, from the method catalog (what each loss asks of the
    loop) and the entry's layers and negation."""
    forget = methods.FORGET_LOSSES[method["forget_loss"]]
    retain = methods.RETAIN_LOSSES.get(method.get("retain_loss") or "", methods.LossEntry())
    logits_forget = forget.reference  # reference logits on the forget batch (NPO, WHP)
    logits_retain = retain.reference and not retain.hidden  # on the retain batch (KL)
    hidden_retain = retain.reference and retain.hidden  # frozen hidden states (RMU)
    frozen_forwards = (
        int(logits_forget) + int(forget.reinforced) + int(logits_retain) + int(hidden_retain)
    )
    copies = 2 if forget.reinforced else int(methods.needs_reference(method))
    copies += int(method.get("negation") is not None)
    layers = None
    if forget.hidden and method.get("trainable") != "all":
        layers = tuple(methods.rmu_layers(method, architecture.layers))
    return Needs(
        retain_gradient=method.get("retain_loss") is not None,
        frozen_copies=copies,
        reference_logits_batches=int(logits_forget) + int(logits_retain),
        frozen_forwards=frozen_forwards,
        rmu_layers=layers,
    )


def trainable_params(architecture: Architecture, needs: Needs) -> int:
    if needs.rmu_layers is not None:
        return len(needs.rmu_layers) * architecture.hidden * architecture.intermediate
    return architecture.params()
