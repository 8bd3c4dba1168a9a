"""Batched greedy generation: left padding, attention mask, KV cache, stop strings.

Prompts are sorted by length so a batch wastes little padding; outputs come back in the
prompts' order and equal what generating one prompt at a time gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bilevel_unlearning.models.encoding import encode


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """The text up to the first occurrence of any stop string."""
    end = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:end]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids, mask


@torch.no_grad()
def greedy_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    *,
    batch_size: int = 32,
    stops: Sequence[str] = (),
) -> list[str]:
    """Greedy continuations of the prompts (special tokens dropped, cut at the first stop)."""
    encoded = [encode(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    device = next(model.parameters()).device
    outputs: list[str] = [""] * len(prompts)
    for first in range(0, len(order), batch_size):
        chunk = order[first : first + batch_size]
        ids, mask = _left_pad([encoded[i] for i in chunk], tokenizer.pad_token_id)
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row, index in enumerate(chunk):
            text = tokenizer.decode(generated[row, ids.shape[1] :], skip_special_tokens=True)
            outputs[index] = cut_at_stops(text, stops)
    return outputs
