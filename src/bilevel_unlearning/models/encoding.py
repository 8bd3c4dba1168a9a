"""Encoding for causal-LM training and scoring: token ids with labels (-100 where no loss is
taken), documents (every token learned) and chat-formatted question-answer pairs (only the
answer learned, in the tokenizer's chat template, as a real instruct model's data would be),
padding and packing. Fine-tuning, unlearning, evaluation and the sanity probes share it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids with exactly one BOS, whether or not the text (a chat template) already has it."""
    has_bos = tokenizer.bos_token is not None and text.startswith(tokenizer.bos_token)
    return tokenizer(text, add_special_tokens=not has_bos)["input_ids"]


def text_example(tokenizer: Any, text: str, max_length: int, eos: bool = True) -> Example:
    """A document (BOS first) followed by EOS unless `eos` is False, every token learned, cut
    to max_length."""
    ids = [*encode(tokenizer, text), *([tokenizer.eos_token_id] if eos else [])][:max_length]
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
    if len(prompt_ids) >= max_length:
        raise ValueError(
            f"the chat prompt of {question[:60]!r} takes {len(prompt_ids)} tokens and max_length "
            f"is {max_length}: no answer token is left to train on or score. Raise the "
            "benchmark's max_length (tofu.max_length and unlearn.tofu.max_length)."
        )
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
