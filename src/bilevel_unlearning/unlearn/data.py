"""Unlearning batches for each benchmark, built the way the paper's code builds them.

- MUSE: the forget text as one token stream cut into fixed-length chunks, each led by BOS; the
  retain chunks are paired with forget chunks by index, modulo the retain length. Corpus form
  `authors` (MUSE's and the BLUR authors' dataset.py): the documents joined by "\n\n" into one
  text, tokenized once, the short last chunk filled from the first chunk; `documents`: EOS
  after each document, the short last chunk kept.
- TOFU: chat-formatted question-answer pairs with loss on the answer tokens only; each epoch's
  k-th forget item is paired with the k-th item of a fresh seeded permutation of the whole
  retain set (TOFU's code draws a random retain item for each forget item).
- WMDP: documents truncated to a per-topic length, batches alternating between the topics
  (the RMU control vector is per topic); retain documents truncated to their own length and
  paired by index. Corpus form `authors` (the BLUR authors' rmu/utils.py and unlearn_bi.py):
  each forget-corpus line fed as it stands in the file (the raw JSON line), BOS and no EOS,
  batches in file order; `documents`: the decoded `text` with EOS, batches shuffled per epoch.

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
    # the forget examples' order in each epoch: "shuffled" (a seeded permutation per epoch and
    # topic) or "file" (as read: the BLUR authors' RMU batches its corpora in file order)
    forget_order: str = "shuffled"


CORPUS_FORMS = ("authors", "documents")
MUSE_DOCUMENT_SEPARATOR = "\n\n"  # MUSE's load_data.py joins the raw texts with it


def _check_form(form: str) -> None:
    if form not in CORPUS_FORMS:
        raise ValueError(f"corpus_form {form!r}: expected one of {', '.join(CORPUS_FORMS)}")


def stream_tokens(tokenizer: Any, texts: Sequence[str], form: str) -> list[int]:
    """The texts as one token stream: joined by a blank line and tokenized once (authors), or
    each tokenized with EOS after it (documents)."""
    _check_form(form)
    if form == "authors":
        text = MUSE_DOCUMENT_SEPARATOR.join(texts)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return stream


def stream_chunks(
    tokenizer: Any, texts: Sequence[str], length: int, form: str = "authors"
) -> list[Example]:
    """The texts' token stream cut into BOS + (length - 1) tokens. A short last chunk is
    filled from the first chunk, BOS included, up to `length` (authors: MUSE's dataset.py
    rotates it so), or kept short (documents; a lone token is dropped: it predicts nothing)."""
    stream = stream_tokens(tokenizer, texts, form)
    body, bos = length - 1, tokenizer.bos_token_id
    chunks = [[bos, *stream[i : i + body]] for i in range(0, len(stream), body)]
    if form == "authors":
        if chunks and len(chunks[-1]) < length:
            chunks[-1] = (chunks[-1] + chunks[0])[:length]
    else:
        chunks = [c for c in chunks if len(c) > 2]
    return [Example(tuple(c), tuple(c)) for c in chunks]


def muse_data(tokenizer: Any, data_dir: Path, length: int, form: str = "authors") -> UnlearnData:
    def chunks(name: str) -> list[Example]:
        texts = [r["text"] for r in read_jsonl(data_dir / f"raw/{name}.jsonl")]
        return stream_chunks(tokenizer, texts, length, form)

    forget, retain = chunks("forget"), chunks("retain1")
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


def corpus_lines(path: Path) -> list[str]:
    """A JSONL file's non-empty lines as they stand, newline included: what the BLUR authors'
    RMU feeds for a forget corpus (rmu/utils.py reads each line and never decodes it)."""
    with path.open(encoding="utf-8") as handle:
        return [line for line in handle if line.strip()]


def wmdp_forget_examples(tokenizer: Any, path: Path, length: int, form: str) -> tuple[Example, ...]:
    """One topic's forget documents: raw lines with BOS and no EOS (authors), or the decoded
    `text` with EOS (documents), each truncated to `length` tokens."""
    _check_form(form)
    if form == "authors":
        return tuple(
            text_example(tokenizer, line, length, eos=False) for line in corpus_lines(path)
        )
    return tuple(text_example(tokenizer, r["text"], length) for r in read_jsonl(path))


def wmdp_data(
    tokenizer: Any,
    data_dir: Path,
    topics: Sequence[str],
    lengths: Mapping[str, int],
    retain_length: int,
    form: str = "authors",
) -> UnlearnData:
    forget = tuple(
        wmdp_forget_examples(
            tokenizer, data_dir / f"corpora/{topic}-forget-corpus.jsonl", lengths[topic], form
        )
        for topic in topics
    )
    retain = tuple(
        text_example(tokenizer, r["text"], retain_length, eos=form != "authors")
        for r in read_jsonl(data_dir / "wikitext/wikitext-2-raw-v1-test.jsonl")
        if r["text"].strip()
    )
    order = "file" if form == "authors" else "shuffled"
    return UnlearnData(forget, retain, tokenizer.pad_token_id, forget_order=order)


def _global_batches(
    data: UnlearnData, global_batch: int, generator: torch.Generator
) -> list[tuple[int, list[int]]]:
    """One epoch's global batches as (topic, example indices): each topic shuffled (or in file
    order) and batched alone, the topics' batches interleaved round by round (bio, cyber, bio,
    ... on WMDP)."""
    per_topic = []
    for topic, examples in enumerate(data.forget):
        order = list(range(len(examples)))
        if data.forget_order == "shuffled":
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
