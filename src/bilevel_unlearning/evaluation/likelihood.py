"""Per-token log-probabilities of labelled tokens, batched (PrivLeak's Min-K%, TOFU's Prob).

Examples are sorted by length so batches pad little; results come back in the input order
and equal scoring one example at a time (right padding is masked from attention).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from bilevel_unlearning.models.encoding import IGNORE, Example, collate, encode
from bilevel_unlearning.numerics import correctly_rounded_sqrt


def text_scoring_example(tokenizer: Any, text: str, max_length: int | None) -> Example:
    """A text scored on every token after BOS, cut to max_length tokens (None: whole; no EOS)."""
    ids = tuple(encode(tokenizer, text)[:max_length])
    return Example(ids, ids)


# Memory bounds of the likelihood passes. A 7B model's whole PrivLeak texts (thousands of
# tokens) at batch 32 made several fp32 (batch, length, 32000) tensors: beyond 80 GB from about
# 3k tokens per text. Batches hold at most BATCH_TOKENS padded tokens (fewer examples when long),
# and log-probabilities are taken over at most LOGPROB_VALUES vocabulary entries at once (spans
# of positions through the output layer). Below both bounds, as on the miniature, one batch and
# one span: the same operations, so the same bits, as scoring without them.
BATCH_TOKENS = 1 << 16
LOGPROB_VALUES = 1 << 27


def token_budget_batches(
    lengths: Sequence[int], batch_size: int, batch_tokens: int = BATCH_TOKENS
) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most batch_size examples whose padded
    size (examples x longest) stays within batch_tokens (a longer example goes alone)."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        current = batches[-1] if batches else None
        if (
            current is not None
            and len(current) < batch_size
            and (len(current) + 1) * lengths[index] <= batch_tokens
        ):
            current.append(index)
        else:
            batches.append([index])
    return batches


def _spans(positions: int, rows: int, vocab: int, values: int) -> list[tuple[int, int]]:
    step = max(1, values // max(1, rows * vocab))
    return [(start, min(start + step, positions)) for start in range(0, positions, step)]


def _scored_batches(
    model: Any,
    examples: Sequence[Example],
    pad_id: int,
    batch_size: int,
    moments: bool,
    budget: tuple[int, int] = (BATCH_TOKENS, LOGPROB_VALUES),
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """Per batch: (the examples' indices, log p of each position's label, with moments the
    mean and standard deviation of log p over the vocabulary (each batch x seq - 1), the
    next-token labels). Positions without a label hold garbage."""
    device = next(model.parameters()).device
    lengths = [len(e.input_ids) for e in examples]
    for chunk in token_budget_batches(lengths, batch_size, budget[0]):
        batch = collate([examples[i] for i in chunk], pad_id)
        hidden = model.get_decoder()(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
        ).last_hidden_state
        labels = batch["labels"][:, 1:].to(device)
        head = model.get_output_embeddings()
        parts: list[tuple[torch.Tensor, ...]] = []
        positions = labels.shape[1]  # every hidden position but the last predicts a label
        for start, stop in _spans(hidden.shape[1], len(chunk), head.out_features, budget[1]):
            logits = head(hidden[:, start:stop]).float()[:, : min(stop, positions) - start]
            if logits.shape[1] == 0:
                continue
            logprobs = torch.log_softmax(logits, dim=-1)
            picked = logprobs.gather(-1, labels[:, start:stop].clamp(min=0).unsqueeze(-1))
            part: tuple[torch.Tensor, ...] = (picked.squeeze(-1),)
            if moments:
                probs = logprobs.exp()
                mu = (probs * logprobs).sum(-1)
                variance = ((probs * logprobs.square()).sum(-1) - mu.square()).clamp_min(0)
                sigma = correctly_rounded_sqrt(variance)
                part += (mu, sigma)
            parts.append(part)
        columns = [torch.cat(c, dim=1) for c in zip(*parts, strict=True)]
        yield chunk, columns[0], (columns[1:] or None), labels


@torch.no_grad()
def labelled_logprobs(
    model: Any, examples: Sequence[Example], pad_id: int, batch_size: int = 16
) -> list[list[float]]:
    """For each example, log p(token | prefix) of every labelled token after the first."""
    scores: list[list[float]] = [[] for _ in examples]
    for chunk, picked, _, labels in _scored_batches(model, examples, pad_id, batch_size, False):
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
    for chunk, picked, moments, labels in _scored_batches(
        model, examples, pad_id, batch_size, True
    ):
        mu, sigma = moments
        for row, index in enumerate(chunk):
            keep = labels[row] != IGNORE
            triples = torch.stack([picked[row][keep], mu[row][keep], sigma[row][keep]], dim=-1)
            stats[index] = [tuple(t) for t in triples.double().cpu().tolist()]
    return stats
