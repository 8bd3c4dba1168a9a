"""The models stage: tokenizer, base pretraining, fine-tuning of targets and oracles.

Each step writes one Hugging Face folder atomically with a provenance.json that records the
seed, the settings and the SHA-256 of every file it was made from.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.io import atomic_path, read_jsonl, write_json
from bilevel_unlearning.models.encoding import ChatFormat, Example, text_example
from bilevel_unlearning.models.hf import (
    load_tokenizer,
    save_model,
    tiny_llama,
    weight_files,
)
from bilevel_unlearning.models.recipes import role_sources, training_examples
from bilevel_unlearning.models.tokenizer import train_tokenizer
from bilevel_unlearning.models.train import train_causal_lm
from bilevel_unlearning.placement import place_for_training, start_models
from bilevel_unlearning.provenance import provenance
from bilevel_unlearning.runtime import compute_device, compute_dtype

log = logging.getLogger(__name__)


def _texts(paths: Sequence[str | Path]) -> list[str]:
    return [r["text"] for p in paths for r in read_jsonl(p)]


def tokenizer_texts(paths: Sequence[str | Path]) -> list[str]:
    """Every string in the files: documents, questions, answers and choices alike."""
    texts: list[str] = []
    for path in paths:
        for record in read_jsonl(path):
            for value in record.values():
                if isinstance(value, str):
                    texts.append(value)
                elif isinstance(value, list):
                    texts.extend(v for v in value if isinstance(v, str))
    return texts


def train_tokenizer_step(*, texts: Sequence[str], out: Path, vocab_size: int, seed: int) -> None:
    tokenizer = train_tokenizer(tokenizer_texts(texts), vocab_size)
    with atomic_path(out) as tmp:
        tokenizer.save_pretrained(tmp)
        write_json(
            tmp / "provenance.json",
            provenance(seed, {"vocab_size": vocab_size}, [Path(t) for t in texts]),
        )
    log.info("trained a tokenizer of %d tokens on %d files", len(tokenizer), len(texts))


def _set_seed(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _train(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    settings: Mapping[str, Any],
    seed: int,
    replay: Sequence[Example] = (),
    replay_per_epoch: int = 0,
    rank: int = 0,
    world: int = 1,
) -> list[float]:
    """Train with a models.pretrain / models.finetune config section; packed sequences."""
    return train_causal_lm(
        model,
        examples,
        pad_id=tokenizer.pad_token_id,
        epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        seed=seed,
        replay=replay,
        replay_per_epoch=replay_per_epoch,
        pack_length=settings["max_length"],
        log=log.info,
        rank=rank,
        world=world,
    )


def pretrain_step(
    *, tokenizer_dir: Path, corpus: Path, out: Path, settings: Mapping[str, Any], seed: int
) -> None:
    """Train the base model from scratch on the general corpus."""
    _set_seed(seed)
    tokenizer = load_tokenizer(tokenizer_dir)
    model = tiny_llama(settings["architecture"], tokenizer, seed).to(compute_device())
    examples = [text_example(tokenizer, t, settings["max_length"]) for t in _texts([corpus])]
    losses = _train(model, tokenizer, examples, settings, seed)
    inputs = [corpus, tokenizer_dir / "tokenizer.json"]
    save_model(model, tokenizer, out, provenance(seed, settings, inputs, epoch_losses=losses))


def finetune_step(
    *,
    benchmark: str,
    role: str,
    base: Path,
    data_dir: Path,
    corpus: Path | None,
    out: Path,
    settings: Mapping[str, Any],
    seed: int,
    precision: str = "float32",
    strategy: str = "single",
) -> None:
    """Fine-tune the base into one of a benchmark's reference models, replaying general text
    (the miniature's general corpus; a hub base model has none: corpus None, no replay).

    `strategy` fsdp or ddp: one process per GPU under the workflow's launcher, loaded and
    placed as the unlearning jobs do (placement.py): under FSDP process 0 alone reads the base
    and every process receives its shards, so neither a GPU nor each process holds it whole.
    Under `precision: mixed` the weights train in fp32 and the folder is written in the
    compute dtype (bf16), as the unlearning loop publishes."""
    from accelerate import Accelerator

    _set_seed(seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())  # the process group, if any
    device = compute_device(accelerator)
    tokenizer = load_tokenizer(base)
    model = start_models(
        base,
        precision,
        strategy,
        device,
        reference=False,
        reinforced=False,
        checkpointing=bool(settings.get("gradient_checkpointing")),
    ).model
    max_length = settings["max_length"]
    chat = ChatFormat.from_settings(settings)  # TOFU's chat keys, merged in by the workflow
    examples = training_examples(benchmark, role, data_dir, tokenizer, max_length, chat)
    corpora = [corpus] if corpus is not None else []
    replay = [text_example(tokenizer, t, max_length) for t in _texts(corpora)]
    replay_per_epoch = round(settings["replay_general"] * len(examples)) if replay else 0
    placed = place_for_training(model, strategy, precision, device)
    with placed.compute():
        losses = _train(
            placed.trained,
            tokenizer,
            examples,
            settings,
            seed,
            replay,
            replay_per_epoch,
            placed.rank,
            placed.world,
        )
    weights = placed.full_weights()  # collective under FSDP
    if accelerator.is_main_process:
        if precision == "mixed":  # published in the compute dtype
            dtype = compute_dtype(precision)
            weights = {k: v.to(dtype) for k, v in (weights or model.state_dict()).items()}
        inputs = [*weight_files(base), *corpora]
        inputs += [data_dir / s for s in role_sources(benchmark, role)]
        record = provenance(
            seed,
            settings,
            inputs,
            benchmark=benchmark,
            role=role,
            epoch_losses=losses,
            precision=precision,
            strategy=strategy,
            processes=placed.world,
        )
        save_model(model, tokenizer, out, record, state_dict=weights)
    accelerator.wait_for_everyone()
