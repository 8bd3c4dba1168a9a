"""Per-token log-probabilities of labelled tokens, batched (PrivLeak's Min-K%, TOFU's Prob).

Examples are sorted by length so batches pad little; results come back in the input order
and equal scoring one example at a time (right padding is masked from attention).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from bilevel_unlearning.models.encoding import IGNORE, Example, collate, encode


def text_scoring_example(tokenizer: Any, text: str, max_length: int | None) -> Example:
    """A text scored on every token after BOS, cut to max_length tokens (None: whole; no EOS)."""
    ids = tuple(encode(tokenizer, text)[:max_length])
    return Example(ids, ids)


def _batched_logprobs(
    model: Any, examples: Sequence[Example], pad_id: int, batch_size: int
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """Batches sorted by length: (the examples' indices, log p over the vocabulary at each
    position (batch, seq - 1, vocab), the next-token labels (batch, seq - 1))."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    device = next(model.parameters()).device
    for first in range(0, len(order), batch_size):
        chunk = order[first : first + batch_size]
        batch = collate([examples[i] for i in chunk], pad_id)
        logits = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
        ).logits.float()
        yield chunk, torch.log_softmax(logits[:, :-1], dim=-1), batch["labels"][:, 1:].to(device)


def _picked(logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p of each position's label (batch, seq - 1); positions without one hold garbage."""
    return logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def labelled_logprobs(
    model: Any, examples: Sequence[Example], pad_id: int, batch_size: int = 16
) -> list[list[float]]:
    """For each example, log p(token | prefix) of every labelled token after the first."""
    scores: list[list[float]] = [[] for _ in examples]
    for chunk, logprobs, labels in _batched_logprobs(model, examples, pad_id, batch_size):
        picked = _picked(logprobs, labels)
        for row, index in enumerate(chunk):
            keep = labels[row] != IGNORE
            scores[index] = picked[row][keep].double().cpu().tolist()
    return scores


@torch.no_grad()
def labelled_token_stats(
    model: Any, examples: Sequence[Example], pad_id: int, batch_size: int = 16
) -> list[list[tuple[float, float, float]]]:
    """For each example, per labelled token: (log p(token), mean and standard deviation of
    log p over the vocabulary under the model's next-token distribution): what Min-K%++
    standardises a token's log-probability with. Its first entries are labelled_logprobs'."""
    stats: list[list[tuple[float, float, float]]] = [[] for _ in examples]
    for chunk, logprobs, labels in _batched_logprobs(model, examples, pad_id, batch_size):
        probs = logprobs.exp()
        mu = (probs * logprobs).sum(-1)
        sigma = ((probs * logprobs.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()
        picked = _picked(logprobs, labels)
        for row, index in enumerate(chunk):
            keep = labels[row] != IGNORE
            triples = torch.stack([picked[row][keep], mu[row][keep], sigma[row][keep]], dim=-1)
            stats[index] = [tuple(t) for t in triples.double().cpu().tolist()]
    return stats
