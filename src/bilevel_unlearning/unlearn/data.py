"""Unlearning batches for each benchmark, built the way the paper's code builds them.

- MUSE: the forget text as one token stream cut into fixed-length chunks, each led by BOS; the
  retain chunks are paired with forget chunks by index, modulo the retain length.
- TOFU: chat-formatted question-answer pairs with loss on the answer tokens only; forget item i
  is paired with a retain item drawn by a seeded permutation.
- WMDP: documents truncated to a per-topic length, batches alternating between the topics
  (the RMU control vector is per topic); retain documents truncated to their own length.

A micro-batch carries a forget batch, the paired retain batch (or none) and its topic index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.models.train import Example, collate, qa_example, text_example


@dataclass(frozen=True)
class MicroBatch:
    forget: dict[str, torch.Tensor]
    retain: dict[str, torch.Tensor] | None
    topic: int = 0


@dataclass(frozen=True)
class UnlearnData:
    """Forget examples per topic (one topic except on WMDP) and the retain examples."""

    forget: tuple[tuple[Example, ...], ...]
    retain: tuple[Example, ...]
    pad_id: int


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
    tokenizer: Any, data_dir: Path, split: str, retain_split: str, length: int
) -> UnlearnData:
    def qa(name: str) -> tuple[Example, ...]:
        records = read_jsonl(data_dir / f"{name}.jsonl")
        return tuple(qa_example(tokenizer, r["question"], r["answer"], length) for r in records)

    return UnlearnData((qa(split),), qa(retain_split), tokenizer.pad_token_id)


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


def epoch_micro_batches(
    data: UnlearnData,
    batch_size: int,
    generator: torch.Generator,
    with_retain: bool,
    rank: int = 0,
    world_size: int = 1,
) -> list[MicroBatch]:
    """One epoch of this process's micro-batches: topics shuffled, batched and interleaved.

    Every process draws the same global order; a global batch holds batch_size * world_size
    examples and process `rank` takes its slice, so DDP's averaged gradient is the gradient of
    the global batch. Forget example j of a topic is paired with retain example j modulo the
    retain length (its index before shuffling), as MUSE pairs its chunks.
    """
    global_size = batch_size * world_size
    per_topic = []
    for topic, examples in enumerate(data.forget):
        order = torch.randperm(len(examples), generator=generator).tolist()
        per_topic.append(
            [
                (topic, order[s : s + global_size][rank * batch_size : (rank + 1) * batch_size])
                for s in range(0, len(order), global_size)
            ]
        )
    batches: list[MicroBatch] = []
    for round_ in range(max(len(t) for t in per_topic)):
        for topic, indices in (t[round_] for t in per_topic if round_ < len(t)):
            if not indices:
                continue
            retain = None
            if with_retain:
                picks = [data.retain[i % len(data.retain)] for i in indices]
                retain = collate(picks, data.pad_id)
            forget = collate([data.forget[topic][i] for i in indices], data.pad_id)
            batches.append(MicroBatch(forget, retain, topic))
    return batches
