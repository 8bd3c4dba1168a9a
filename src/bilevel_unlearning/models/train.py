"""Causal-LM training for the models stage: pretraining the base and fine-tuning targets/oracles.

Examples are token ids with labels (-100 where no loss is taken): plain documents learn every
token, question-answer pairs (TOFU) learn only the answer, formatted with the tokenizer's chat
template as a real instruct model's data would be.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bilevel_unlearning.runtime import to_device

IGNORE = -100


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids with exactly one BOS, whether or not the text (a chat template) already has it."""
    has_bos = tokenizer.bos_token is not None and text.startswith(tokenizer.bos_token)
    return tokenizer(text, add_special_tokens=not has_bos)["input_ids"]


def text_example(tokenizer: Any, text: str, max_length: int) -> Example:
    """A document followed by EOS, every token learned, cut to max_length."""
    ids = [*encode(tokenizer, text), tokenizer.eos_token_id][:max_length]
    return Example(tuple(ids), tuple(ids))


# open-unlearning's fixed date for Llama-3 chat templates, which otherwise insert today's date
# (an evaluation would then depend on the day it ran).
DEFAULT_CHAT_DATE = "10 Apr 2025"


@dataclass(frozen=True)
class ChatFormat:
    """How a question (and answer) is rendered: the same in fine-tuning, unlearning and
    evaluation. `system_prompt`: what the TOFU models were fine-tuned with ("You are a helpful
    assistant." for open-unlearning's Llama-3.2-1B-Instruct); None: no system message."""

    system_prompt: str | None = None
    date_string: str = DEFAULT_CHAT_DATE

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ChatFormat:
        """From the config's tofu section (keys system_prompt, chat_date)."""
        return cls(settings.get("system_prompt"), settings.get("chat_date", DEFAULT_CHAT_DATE))

    def render(self, tokenizer: Any, question: str, answer: str | None = None) -> str:
        """The prompt (answer None: ends where the model answers) or the whole exchange."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": question})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return tokenizer.apply_chat_template(
            messages,
            add_generation_prompt=answer is None,
            tokenize=False,
            date_string=self.date_string,
        )


PLAIN_CHAT = ChatFormat()  # no system message, the fixed date


def chat_prompt(tokenizer: Any, question: str, chat: ChatFormat = PLAIN_CHAT) -> str:
    """The text a chat model sees before it answers a question."""
    return chat.render(tokenizer, question)


def qa_example(
    tokenizer: Any, question: str, answer: str, max_length: int, chat: ChatFormat = PLAIN_CHAT
) -> Example:
    """A chat-formatted question and answer; only the answer's tokens carry loss."""
    prompt_ids = encode(tokenizer, chat_prompt(tokenizer, question, chat))
    full_ids = encode(tokenizer, chat.render(tokenizer, question, answer))
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template tokenizes the prompt differently inside the full text")
    labels = [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return Example(tuple(full_ids[:max_length]), tuple(labels[:max_length]))


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked from attention and loss."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example.input_ids)
        ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(examples: Sequence[Example], length: int) -> list[Example]:
    """Concatenate examples into one stream and cut it into chunks of `length` tokens.

    Packing keeps every position of a batch busy (no padding), and a short document is then
    seen after unrelated text, as a question is after the few-shot examples of a prompt.
    A chunk with nothing to learn (a last chunk of one token, or only prompt tokens) is dropped:
    its loss would be a mean over no tokens, NaN.
    """
    ids = [t for e in examples for t in e.input_ids]
    labels = [t for e in examples for t in e.labels]
    chunks = [
        Example(tuple(ids[i : i + length]), tuple(labels[i : i + length]))
        for i in range(0, len(ids), length)
    ]
    return [c for c in chunks if any(label != IGNORE for label in c.labels[1:])]


def warmup_then_linear(total_steps: int, warmup_share: float = 0.05) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then linear decay to 10% of the peak by the end."""
    warmup = max(1, int(total_steps * warmup_share))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 1.0 - 0.9 * min(1.0, progress)

    return factor


def schedule_factor(kind: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor of the Hugging Face schedulers of these names: linear warm-up over
    `warmup_steps`, then constant, linear decay to zero, or cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if kind == "cosine":
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return max(0.0, 1.0 - progress)

    return factor


def train_causal_lm(
    model: torch.nn.Module,
    examples: Sequence[Example],
    *,
    pad_id: int,
    epochs: int | None,
    learning_rate: float,
    batch_size: int,
    seed: int,
    replay: Sequence[Example] = (),
    replay_per_epoch: int = 0,
    pack_length: int | None = None,
    max_steps: int | None = None,
    lr_factor: Callable[[int], float] | None = None,
    log: Callable[[str], None] = print,
) -> list[float]:
    """Train with AdamW; each epoch mixes in `replay_per_epoch` examples drawn from `replay`.

    With `pack_length`, each epoch's shuffled examples are packed into chunks of that length.
    `max_steps` (epochs None): stop after that many updates, reshuffling as often as needed
    (the relearning attack's "N steps"). `lr_factor`: the learning-rate factor per step
    (default: warm-up then linear decay over the whole run, warmup_then_linear).

    Returns the mean loss of each epoch. A non-finite loss stops training with an error.
    """
    if (epochs is None) == (max_steps is None):
        raise ValueError("give train_causal_lm either epochs or max_steps")
    generator = torch.Generator().manual_seed(seed)
    replay_per_epoch = min(replay_per_epoch, len(replay))
    epoch_size = len(examples) + replay_per_epoch
    if pack_length is not None:
        lengths = sorted((len(e.input_ids) for e in replay), reverse=True)[:replay_per_epoch]
        epoch_size = math.ceil(
            (sum(len(e.input_ids) for e in examples) + sum(lengths)) / pack_length
        )
    total_steps = max_steps if epochs is None else epochs * math.ceil(epoch_size / batch_size)
    device = next(model.parameters()).device  # batches go where the model is
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor or warmup_then_linear(total_steps)
    )
    model.train()
    epoch_losses, step = [], 0
    for epoch in itertools.count(1):
        if (epochs is not None and epoch > epochs) or step == total_steps:
            break
        drawn = torch.randperm(len(replay), generator=generator)[:replay_per_epoch].tolist()
        pool = list(examples) + [replay[i] for i in drawn]
        order = torch.randperm(len(pool), generator=generator).tolist()
        if pack_length is not None:
            pool = pack([pool[i] for i in order], pack_length)
            order = list(range(len(pool)))
        losses, tokens, start = [], 0, time.perf_counter()
        for first in range(0, len(order), batch_size):
            if step == total_steps:
                break
            batch = to_device(
                collate([pool[i] for i in order[first : first + batch_size]], pad_id), device
            )
            loss = model(**batch).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss {loss.item()} at epoch {epoch}: stopping before the update; "
                    "lower the learning rate or check the data"
                )
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += int(batch["attention_mask"].sum())
            step += 1
        if not losses:  # packing made the epoch shorter than estimated
            break
        epoch_losses.append(sum(losses) / len(losses))
        rate = tokens / (time.perf_counter() - start)
        loss = epoch_losses[-1]
        log(f"epoch {epoch}/{epochs or '-'} step {step} loss {loss:.4f} ({rate:.0f} tokens/s)")
    model.eval()
    return epoch_losses
