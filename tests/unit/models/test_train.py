"""Causal-LM training pieces: example labels, packing, padding, the schedule, and a tiny model
that learns, reproducibly, and stops on a non-finite loss."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SEED, TINY_ARCHITECTURE

from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.models.encoding import (
    IGNORE,
    Example,
    chat_prompt,
    collate,
    encode,
    pack,
    qa_example,
    text_example,
)
from bilevel_unlearning.models.hf import tiny_llama
from bilevel_unlearning.models.train import train_causal_lm, warmup_then_linear


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def documents(data_root: Path, tokenizer: Any) -> list[Example]:
    corpus = [r["text"] for r in read_jsonl(data_root / "general" / "corpus.jsonl")]
    return [text_example(tokenizer, t, 64) for t in corpus[:8]]


# ---------------------------------------------------------------- examples


def test_qa_example_learns_only_the_answer_and_eos(tokenizer: Any) -> None:
    question, answer = "Where was Gacour Thekath born?", "Gacour Thekath was born in Brouford."
    example = qa_example(tokenizer, question, answer, max_length=512)
    prompt_ids = encode(tokenizer, chat_prompt(tokenizer, question))
    n = len(prompt_ids)
    assert list(example.input_ids[:n]) == prompt_ids
    assert len(example.labels) == len(example.input_ids)
    assert all(label == IGNORE for label in example.labels[:n])
    assert list(example.labels[n:]) == list(example.input_ids[n:])
    assert IGNORE not in example.labels[n:]
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(example.input_ids[n:-1]) == " " + answer


def test_qa_example_is_cut_to_max_length(tokenizer: Any) -> None:
    full = qa_example(tokenizer, "Who?", "A rather long answer with several words.", 512)
    prompt = sum(label == -100 for label in full.labels)
    cut = qa_example(tokenizer, "Who?", "A rather long answer with several words.", prompt + 2)
    assert cut.input_ids == full.input_ids[: prompt + 2] and cut.labels == full.labels[: prompt + 2]
    with pytest.raises(ValueError, match=f"takes {prompt} tokens and max_length is {prompt}"):
        qa_example(tokenizer, "Who?", "A rather long answer.", prompt)  # nothing left to score


def test_text_example_learns_every_token(tokenizer: Any) -> None:
    example = text_example(tokenizer, "The capital of Zedmere is Brouford.", 512)
    assert example.labels == example.input_ids
    assert example.input_ids[0] == tokenizer.bos_token_id
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert len(text_example(tokenizer, "The capital of Zedmere is Brouford.", 3).input_ids) == 3


def test_pack_concatenates_in_order_and_chunks() -> None:
    examples = [
        Example((1, 2, 3), (1, 2, 3)),
        Example((4, 5), (IGNORE, 5)),
        Example((6, 7, 8, 9), (6, 7, 8, 9)),
    ]
    packed = pack(examples, 3)
    assert [e.input_ids for e in packed] == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    assert [e.labels for e in packed] == [(1, 2, 3), (IGNORE, 5, 6), (7, 8, 9)]
    assert [e.input_ids for e in pack(examples, 9)] == [tuple(range(1, 10))]
    assert pack([], 4) == []


def test_pack_drops_chunks_with_nothing_to_learn() -> None:
    """A one-token tail, or a chunk of prompt tokens only, would give a NaN mean loss."""
    examples = [Example((1, 2, 3, 4), (1, 2, 3, 4)), Example((5,), (5,))]
    assert [e.input_ids for e in pack(examples, 4)] == [(1, 2, 3, 4)]
    prompt_only = [Example((1, 2), (1, 2)), Example((3, 4, 5), (IGNORE, IGNORE, IGNORE))]
    assert [e.input_ids for e in pack(prompt_only, 2)] == [(1, 2)]


def test_collate_right_pads_and_masks() -> None:
    batch = collate([Example((5, 6, 7), (IGNORE, 6, 7)), Example((8,), (8,))], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert all(t.dtype == torch.long for t in batch.values())
    padded = collate([Example((3,), (3,)), Example((4, 4), (4, 4))], pad_id=9)
    assert padded["input_ids"].tolist() == [[3, 9], [4, 4]]


def test_warmup_then_linear_values() -> None:
    factor = warmup_then_linear(100, warmup_share=0.05)  # 5 warm-up steps
    assert factor(0) == pytest.approx(1 / 5)
    assert factor(2) == pytest.approx(3 / 5)
    assert factor(4) == pytest.approx(1.0)  # last warm-up step
    assert factor(5) == pytest.approx(1.0)  # decay starts from the peak
    assert factor(99) == pytest.approx(1 - 0.9 * 94 / 95)  # last optimizer step
    assert factor(100) == pytest.approx(0.1)
    assert factor(1000) == pytest.approx(0.1)  # floor at 10%
    values = [factor(s) for s in range(5, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    short = warmup_then_linear(10)  # 5% of 10 steps rounds down: one warm-up step at least
    assert short(0) == pytest.approx(1.0)
    assert short(10) == pytest.approx(0.1)


# ---------------------------------------------------------------- training


def train(tokenizer: Any, examples: list[Example], seed: int = SEED, **kwargs: Any) -> Any:
    model = tiny_llama(TINY_ARCHITECTURE, tokenizer, seed=SEED)
    settings = {"epochs": 8, "learning_rate": 1e-2, "batch_size": 4, "seed": seed} | kwargs
    losses = train_causal_lm(model, examples, pad_id=tokenizer.pad_token_id, log=quiet, **settings)
    return model, losses


def test_training_lowers_the_loss(one_thread: None, tokenizer: Any, documents: list) -> None:
    model, losses = train(tokenizer, documents)
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0]
    assert sum(b < a for a, b in itertools.pairwise(losses)) >= 6
    assert not model.training  # handed back in eval mode
    # evaluated after training (eval mode, whole batch), the loss stays low
    with torch.no_grad():
        final = model(**collate(documents, tokenizer.pad_token_id)).loss.item()
    assert final < losses[0] * 0.7


def test_training_is_deterministic(one_thread: None, tokenizer: Any, documents: list) -> None:
    first, losses_1 = train(tokenizer, documents, epochs=3)
    second, losses_2 = train(tokenizer, documents, epochs=3)
    other, _ = train(tokenizer, documents, epochs=3, seed=SEED + 1)
    assert losses_1 == losses_2
    state_1, state_2 = first.state_dict(), second.state_dict()
    assert state_1.keys() == state_2.keys()
    assert all(torch.equal(state_1[k], state_2[k]) for k in state_1)
    # another seed shuffles differently, so the weights differ
    assert not all(torch.equal(state_1[k], other.state_dict()[k]) for k in state_1)


def test_packing_and_replay_train(one_thread: None, tokenizer: Any, documents: list) -> None:
    _, losses = train(
        tokenizer,
        documents[:4],
        epochs=4,
        replay=documents[4:],
        replay_per_epoch=2,
        pack_length=32,
    )
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_nan_parameter_raises_floating_point_error(
    one_thread: None, tokenizer: Any, documents: list
) -> None:
    model = tiny_llama(TINY_ARCHITECTURE, tokenizer, seed=SEED)
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at epoch 1"):
        train_causal_lm(
            model,
            documents,
            pad_id=tokenizer.pad_token_id,
            epochs=2,
            learning_rate=1e-3,
            batch_size=4,
            seed=SEED,
            log=quiet,
        )


def test_huge_learning_rate_raises_floating_point_error(
    one_thread: None, tokenizer: Any, documents: list
) -> None:
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(tokenizer, documents, epochs=3, learning_rate=1e30)


def test_a_model_folder_of_bin_weights_loads_like_safetensors(
    tiny_model: Any, tokenizer: Any, tmp_path: Path
) -> None:
    """Older hub repos ship only pytorch_model*.bin: such a folder loads and is checksummed."""
    from bilevel_unlearning.io import weight_files
    from bilevel_unlearning.models.hf import load_model

    tiny_model.config.save_pretrained(tmp_path)  # transformers itself writes safetensors only
    torch.save(tiny_model.state_dict(), tmp_path / "pytorch_model.bin")
    tokenizer.save_pretrained(tmp_path)
    assert [p.suffix for p in weight_files(tmp_path)] == [".bin"]
    loaded = load_model(tmp_path, "float32", "cpu")
    for name, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
