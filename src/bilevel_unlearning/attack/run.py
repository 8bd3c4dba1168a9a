"""The attack step: one model (a row at an epoch) attacked into a new model folder, which the
evaluate step then reads like any other (results/{benchmark}/attack/{row}/{attack}/epoch_{k})."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.attack.quantize import bitsandbytes_config, quantize_model
from bilevel_unlearning.attack.relearn import relearn, relearn_examples
from bilevel_unlearning.io import atomic_path, read_json
from bilevel_unlearning.models.hf import (
    PROVENANCE_FILE,
    load_model,
    load_tokenizer,
    save_model,
)
from bilevel_unlearning.models.recipes import forget_sources
from bilevel_unlearning.provenance import attack_provenance
from bilevel_unlearning.runs import HELDOUT_RELEARN

RELEARN_KINDS = ("relearn", HELDOUT_RELEARN)

log = logging.getLogger(__name__)


def bitsandbytes_folder(model_dir: Path, out: Path, bits: int, record: dict[str, Any]) -> None:
    """The weights as they are, with a config that makes transformers load them quantized."""
    quantization = bitsandbytes_config(bits)
    with atomic_path(out) as tmp:
        shutil.copytree(model_dir, tmp, dirs_exist_ok=True)
        config = json.loads((tmp / "config.json").read_text())
        config["quantization_config"] = quantization
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        (tmp / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))


def attack_step(
    *,
    benchmark: str,
    attack: str,
    model_dir: Path,
    data: Path,
    out: Path,
    settings: Mapping[str, Any],
    seed: int,
    precision: str,
    heldout_split: Path | None = None,
) -> None:
    """Attack one model folder into `out` (settings: runs.attack_settings; kind relearn,
    relearn_heldout with the held-out split's file, or quantize)."""
    torch.manual_seed(seed)
    kind = settings["kind"]
    relearning = kind in RELEARN_KINDS
    if (kind == HELDOUT_RELEARN) != (heldout_split is not None):
        raise ValueError(f"attack {attack}: a held-out split goes with {HELDOUT_RELEARN} only")
    data_files = [data / f for f in forget_sources(benchmark, settings)] if relearning else []
    data_files += [heldout_split] if heldout_split is not None else []
    record = attack_provenance(model_dir, data_files, settings, seed, attack=attack)
    if kind == "quantize" and settings.get("backend", "rtn") == "bitsandbytes":
        bitsandbytes_folder(model_dir, out, int(settings["bits"]), record)
        return
    model = load_model(model_dir, precision)
    tokenizer = load_tokenizer(model_dir)
    if relearning:
        split = None if heldout_split is None else read_json(heldout_split)
        examples = relearn_examples(benchmark, data, tokenizer, settings, seed, split)
        record["losses"] = relearn(model, tokenizer, examples, settings, seed, log=log.info)
        record["examples"] = len(examples)
    elif kind == "quantize":
        layers = quantize_model(model, int(settings["bits"]), int(settings["group_size"]))
        record["quantized_layers"] = len(layers)
    else:
        raise ValueError(f"unknown attack kind {kind!r} (relearn or quantize)")
    save_model(model, tokenizer, out, record)
    log.info("%s: %s of %s written to %s", benchmark, attack, model_dir, out)
