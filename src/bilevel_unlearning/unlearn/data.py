"""Unlearning batches for each benchmark, built the way the paper's code builds them.

- MUSE: the forget text as one token stream cut into fixed-length chunks, each led by BOS; the
  retain chunks are paired with forget chunks by index, modulo the retain length.
- TOFU: chat-formatted question-answer pairs with loss on the answer tokens only; each epoch's
  k-th forget item is paired with the k-th item of a fresh seeded permutation of the whole
  retain set (TOFU's code draws a random retain item for each forget item).
- WMDP: documents truncated to a per-topic length, batches alternating between the topics
  (the RMU control vector is per topic); retain documents truncated to their own length.

A micro-batch carries a forget batch, the paired retain batch (or none), its topic index and
its weight in the global batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.models.encoding import (
    PLAIN_CHAT,
    ChatFormat,
    Example,
    collate,
    qa_example,
    text_example,
)
from bilevel_unlearning.runtime import BatchLayout, to_device


@dataclass(frozen=True)
class MicroBatch:
    forget: dict[str, torch.Tensor]
    retain: dict[str, torch.Tensor] | None
    topic: int = 0
    weight: float = 1.0  # this micro-batch's share of the global batch (see epoch_steps)

    def to(self, device: torch.device) -> MicroBatch:
        """The same micro-batch with every tensor on `device`."""
        retain = None if self.retain is None else to_device(self.retain, device)
        return MicroBatch(to_device(self.forget, device), retain, self.topic, self.weight)


@dataclass(frozen=True)
class UnlearnData:
    """Forget examples per topic (one topic except on WMDP) and the retain examples."""

    forget: tuple[tuple[Example, ...], ...]
    retain: tuple[Example, ...]
    pad_id: int
    # how a forget example finds its retain example: "index" (forget j with retain j modulo
    # the retain length, MUSE's pairing) or "permutation" (TOFU: the epoch's k-th forget example
    # with the k-th item of a fresh seeded permutation of the whole retain set)
    retain_pairing: str = "index"


def stream_chunks(tokenizer: Any, texts: Sequence[str], length: int) -> list[Example]:
    """The texts as one token stream (EOS between texts) cut into BOS + (length - 1) tokens."""
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    body = length - 1
    chunks = [stream[i : i + body] for i in range(0, len(stream), body)]
    return [
        Example((tokenizer.bos_token_id, *c), (tokenizer.bos_token_id, *c))
        for c in chunks
        if len(c) > 1
    ]


def muse_data(tokenizer: Any, data_dir: Path, length: int) -> UnlearnData:
    forget = stream_chunks(
        tokenizer, [r["text"] for r in read_jsonl(data_dir / "raw/forget.jsonl")], length
    )
    retain = stream_chunks(
        tokenizer, [r["text"] for r in read_jsonl(data_dir / "raw/retain1.jsonl")], length
    )
    return UnlearnData((tuple(forget),), tuple(retain), tokenizer.pad_token_id)


def tofu_data(
    tokenizer: Any,
    data_dir: Path,
    split: str,
    retain_split: str,
    length: int,
    chat: ChatFormat = PLAIN_CHAT,
) -> UnlearnData:
    def qa(name: str) -> tuple[Example, ...]:
        records = read_jsonl(data_dir / f"{name}.jsonl")
        return tuple(
            qa_example(tokenizer, r["question"], r["answer"], length, chat) for r in records
        )

    forget, retain = qa(split), qa(retain_split)
    return UnlearnData((forget,), retain, tokenizer.pad_token_id, retain_pairing="permutation")


def wmdp_data(
    tokenizer: Any,
    data_dir: Path,
    topics: Sequence[str],
    lengths: Mapping[str, int],
    retain_length: int,
) -> UnlearnData:
    forget = tuple(
        tuple(
            text_example(tokenizer, r["text"], lengths[topic])
            for r in read_jsonl(data_dir / f"corpora/{topic}-forget-corpus.jsonl")
        )
        for topic in topics
    )
    retain = tuple(
        text_example(tokenizer, r["text"], retain_length)
        for r in read_jsonl(data_dir / "wikitext/wikitext-2-raw-v1-test.jsonl")
        if r["text"].strip()
    )
    return UnlearnData(forget, retain, tokenizer.pad_token_id)


def _global_batches(
    data: UnlearnData, global_batch: int, generator: torch.Generator
) -> list[tuple[int, list[int]]]:
    """One epoch's global batches as (topic, example indices): each topic shuffled and batched
    alone, the topics' batches interleaved round by round (bio, cyber, bio, ... on WMDP)."""
    per_topic = []
    for topic, examples in enumerate(data.forget):
        order = torch.randperm(len(examples), generator=generator).tolist()
        per_topic.append(
            [(topic, order[s : s + global_batch]) for s in range(0, len(order), global_batch)]
        )
    rounds = max(len(t) for t in per_topic)
    return [t[r] for r in range(rounds) for t in per_topic if r < len(t)]


def _micro_batch(
    data: UnlearnData,
    topic: int,
    indices: Sequence[int],
    retain_indices: Sequence[int] | None,
    weight: float,
) -> MicroBatch:
    retain = None
    if retain_indices is not None:
        retain = collate([data.retain[i] for i in retain_indices], data.pad_id)
    forget = collate([data.forget[topic][i] for i in indices], data.pad_id)
    return MicroBatch(forget, retain, topic, weight)


def _retain_partners(
    data: UnlearnData, batches: Sequence[tuple[int, list[int]]], generator: torch.Generator
) -> list[list[int]]:
    """The retain example of each forget example of the epoch's global batches."""
    count = len(data.retain)
    if data.retain_pairing == "index":
        return [[i % count for i in indices] for _, indices in batches]
    order = torch.randperm(count, generator=generator).tolist()
    partners, position = [], 0
    for _, indices in batches:
        partners.append([order[(position + j) % count] for j in range(len(indices))])
        position += len(indices)
    return partners


def epoch_steps(
    data: UnlearnData,
    layout: BatchLayout,
    generator: torch.Generator,
    with_retain: bool,
    rank: int = 0,
    max_steps: int | None = None,
) -> list[list[MicroBatch]]:
    """This process's optimizer steps of one epoch, each `layout.grad_accum` micro-batches.

    Every process draws the same global order. A global batch is cut into processes x
    grad_accum contiguous slots of `micro_batch` examples; process `rank` takes slots
    rank*grad_accum ... and accumulates them. Each micro-batch's loss is weighted by its share
    of the global batch (times the process count, which DDP's gradient averaging divides out),
    so the update is that of the global batch however it is split, a short last batch
    included. A slot left empty by a short batch repeats an example with weight 0, so every
    process runs the same number of backward passes (DDP synchronises on each).
    The retain partners follow `data.retain_pairing` (see UnlearnData); the permutation is
    drawn from the same generator after the forget order, so every process draws the same.
    """
    micro, accum, processes = layout.micro_batch, layout.grad_accum, layout.processes
    batches = _global_batches(data, layout.global_batch, generator)[:max_steps]
    partners = _retain_partners(data, batches, generator) if with_retain else None
    steps = []
    for number, (topic, indices) in enumerate(batches):
        chosen = range(len(indices))
        slots = [chosen[k * micro : (k + 1) * micro] for k in range(processes * accum)]
        group = []
        for slot in slots[rank * accum : (rank + 1) * accum]:
            positions = slot or chosen[:1]
            weight = len(slot) * processes / len(indices)
            retain = None if partners is None else [partners[number][p] for p in positions]
            group.append(_micro_batch(data, topic, [indices[p] for p in positions], retain, weight))
        steps.append(group)
    return steps


def steps_per_epoch(data: UnlearnData, global_batch: int, max_steps: int | None = None) -> int:
    """Optimizer steps in one epoch: each topic's examples in global batches, optionally capped
    (WMDP: the authors stop after 150 batches)."""
    count = sum(-(-len(topic) // global_batch) for topic in data.forget)
    return count if max_steps is None else min(count, max_steps)
