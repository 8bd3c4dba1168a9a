"""The relearning attack: a few fine-tuning steps on a sample of the forget data.

Recipes from the literature (SPEC section 8): AdamW, a small learning rate, a warm-up of a
tenth of the steps and a cosine decay, on the forget corpus (MUSE), forget-corpus documents
(WMDP) or the forget split's QA (TOFU). If unlearning only hid the knowledge, a handful of
steps brings it back; a model that never saw it (the oracle) learns it from scratch, which is
the baseline an attacked method is read against. The held-out variant (attack.heldout) relearns
one half of the forget entities and is scored on the other. The fine-tune is the models stage's
(train_causal_lm, packed sequences).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.attack.heldout import attacker_records, forget_records
from bilevel_unlearning.models.encoding import ChatFormat, Example
from bilevel_unlearning.models.recipes import examples_of
from bilevel_unlearning.models.train import schedule_factor, train_causal_lm


def sample_records(records: list[dict[str, Any]], samples: int | None, seed: int) -> list[dict]:
    """`samples` records drawn without replacement by the seed (None: all of them), in the
    order they were drawn."""
    if samples is None or samples >= len(records):
        return list(records)
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed))
    return [records[i] for i in order[:samples].tolist()]


def relearn_examples(
    benchmark: str,
    data: Path,
    tokenizer: Any,
    settings: Mapping[str, Any],
    seed: int,
    heldout_split: Mapping[str, Any] | None = None,
) -> list[Example]:
    """The sampled forget data as training examples, cut to the attack's max_length; with a
    held-out split, sampled from its attacker half only (attack.heldout)."""
    if heldout_split is None:
        records = forget_records(benchmark, data, settings)
    else:
        records = attacker_records(heldout_split, benchmark, data, settings)
    chosen = sample_records(records, settings.get("samples"), seed)
    chat = ChatFormat.from_settings(settings)
    return examples_of(benchmark, chosen, tokenizer, settings["max_length"], chat)


def relearn(
    model: torch.nn.Module,
    tokenizer: Any,
    examples: list[Example],
    settings: Mapping[str, Any],
    seed: int,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Fine-tune for exactly settings['steps'] updates; returns each pass's mean loss."""
    steps = int(settings["steps"])
    warmup = int(steps * settings.get("warmup_share", 0.1))
    return train_causal_lm(
        model,
        examples,
        pad_id=tokenizer.pad_token_id,
        epochs=None,
        max_steps=steps,
        learning_rate=settings["learning_rate"],
        batch_size=settings["batch_size"],
        seed=seed,
        pack_length=settings["max_length"],
        lr_factor=schedule_factor(settings.get("schedule", "cosine"), steps, warmup),
        log=log,
    )
