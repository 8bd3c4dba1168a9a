"""Hugging Face model folders: the tiny Llama factory, atomic saving with provenance, loading."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from bilevel_unlearning.io import atomic_path, record_checksums, weight_files
from bilevel_unlearning.runtime import compute_device, compute_dtype

PROVENANCE_FILE = "provenance.json"
TOKENIZER_VOCABULARY_FILES = ("tokenizer.json", "tokenizer.model")


def tiny_llama(architecture: Mapping[str, int], tokenizer: Any, seed: int) -> LlamaForCausalLM:
    """A Llama-architecture model initialised from the seed, sized by the config."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=architecture["hidden_size"],
        intermediate_size=architecture["intermediate_size"],
        num_hidden_layers=architecture["num_hidden_layers"],
        num_attention_heads=architecture["num_attention_heads"],
        num_key_value_heads=architecture["num_attention_heads"],
        max_position_embeddings=architecture["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def write_model_folder(
    model: Any,
    tokenizer: Any,
    folder: Path,
    provenance: Mapping,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Weights (safetensors), config, tokenizer and provenance into an existing folder;
    `state_dict`: the full weights of a sharded model, gathered by the caller."""
    model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
    record_checksums(weight_files(folder))
    tokenizer.save_pretrained(folder)
    (folder / PROVENANCE_FILE).write_text(json.dumps(dict(provenance), indent=2, sort_keys=True))


def save_model(
    model: Any,
    tokenizer: Any,
    path: str | os.PathLike[str],
    provenance: Mapping,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Save a model folder atomically: complete or absent, never half written (`state_dict`:
    as write_model_folder)."""
    with atomic_path(path) as tmp:
        write_model_folder(model, tokenizer, tmp, provenance, state_dict)


def _require_model_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a Hugging Face model folder (no config.json). It is made by the "
            "models stage (rules pretrain_base / finetune_model) or the download stage."
        )


def load_model(
    path: str | os.PathLike[str],
    precision: str = "float32",
    device: torch.device | str | None = None,
) -> Any:
    """Load a causal LM in the configured precision, in eval mode, on `device` (default: the
    job's compute device, see runtime.compute_device)."""
    path = Path(path)
    _require_model_folder(path)
    weight_files(path)  # names a folder without weights, before transformers' long message
    device = compute_device() if device is None else device
    if "quantization_config" in json.loads((path / "config.json").read_text()):
        # quantized on loading (the bitsandbytes attack): placed by transformers, never moved
        model = AutoModelForCausalLM.from_pretrained(path, device_map={"": device})
        return model.eval()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=compute_dtype(precision))
    return model.to(device).eval()


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not (path / "tokenizer_config.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no tokenizer (no tokenizer_config.json). It is made by the models "
            "stage (rule train_tokenizer) or the download stage."
        )
    if not any((path / name).is_file() for name in TOKENIZER_VOCABULARY_FILES):
        raise FileNotFoundError(
            f"{path} has tokenizer_config.json but no vocabulary file (tokenizer.json, or a "
            "SentencePiece tokenizer.model): the folder is incomplete. Delete it and rerun the "
            "rule that makes it (train_tokenizer, finetune_model or a download rule)."
        )
    return with_pad_token(AutoTokenizer.from_pretrained(path))


def with_pad_token(tokenizer: Any) -> Any:
    """Pad with EOS where the tokenizer has no pad token (Llama-2's and Llama-3.2's have none),
    as the BLUR authors, open-unlearning and MUSE all do; padded positions are masked, so
    which id fills them changes no number. provenance.pad_token_record says which held."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                "the tokenizer has neither a pad nor an EOS token: batches cannot be padded. "
                "Give its tokenizer_config.json a pad_token (or eos_token)."
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def enable_activation_checkpointing(model: Any) -> None:
    """Recompute each decoder layer's activations in the backward pass (non-reentrant, so it
    composes with FSDP2 and with frozen parameters); the same gradients, less memory."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
