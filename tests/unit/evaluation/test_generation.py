"""Greedy generation (batched with left padding = one prompt at a time = a plain argmax loop),
stop strings, and ROUGE-L against hand-computed values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SEED, TINY_ARCHITECTURE

from bilevel_unlearning.evaluation.generation import cut_at_stops, greedy_generate
from bilevel_unlearning.evaluation.rouge import mean_rouge_l, rouge_l
from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.models.encoding import encode, text_example
from bilevel_unlearning.models.hf import tiny_llama
from bilevel_unlearning.models.train import train_causal_lm

PROMPTS = [  # different lengths, so a batch needs left padding
    "Question: What is the capital of Zedmere?\nAnswer: ",
    "About",
    "The capital of",
    "World facts.\nThe capital of Brou is Stainford. The currency of Brou is the",
    "Question: Who was the teacher of Gacour Thekath?\nAnswer: ",
    "Science notes.\nThe star",
    "x",
]
NEW_TOKENS = 12


# ---------------------------------------------------------------- cut_at_stops


@pytest.mark.parametrize(
    ("text", "stops", "expected"),
    [
        ("Brouford\nQuestion: next", ["\nQuestion:"], "Brouford"),
        ("Brouford\nQuestion: next", [], "Brouford\nQuestion: next"),
        ("Brouford\nQuestion: next", ["Answer:"], "Brouford\nQuestion: next"),
        ("a. b\nc", ["\n", "."], "a"),  # the earliest stop wins, whatever the list order
        ("a. b\nc", [".", "\n"], "a"),
        ("\nanything", ["\n"], ""),
        ("", ["\n"], ""),
        ("abcabc", ["c", "bc"], "a"),
    ],
)
def test_cut_at_stops(text: str, stops: list[str], expected: str) -> None:
    assert cut_at_stops(text, stops) == expected


# ---------------------------------------------------------------- greedy_generate


@pytest.fixture(scope="module")
def trained_model(data_root: Path, tokenizer: Any, one_thread: None) -> Any:
    """A tiny Llama trained a few epochs on general text, so its outputs depend on the prompt."""
    model = tiny_llama(TINY_ARCHITECTURE, tokenizer, seed=SEED)
    corpus = [r["text"] for r in read_jsonl(data_root / "general" / "corpus.jsonl")][:16]
    examples = [text_example(tokenizer, t, 64) for t in corpus]
    train_causal_lm(
        model,
        examples,
        pad_id=tokenizer.pad_token_id,
        epochs=6,
        learning_rate=1e-2,
        batch_size=4,
        seed=SEED,
        log=lambda _: None,
    )
    return model.eval()


@torch.no_grad()
def argmax_loop(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding spelled out: no batch, no padding, no cache."""
    ids = encode(tokenizer, prompt)
    new: list[int] = []
    for _ in range(max_new_tokens):
        logits = model(input_ids=torch.tensor([ids + new])).logits[0, -1]
        token = int(logits.argmax())
        new.append(token)
        if token == tokenizer.eos_token_id:
            break
    return tokenizer.decode(new, skip_special_tokens=True)


def test_batched_equals_one_at_a_time(trained_model: Any, tokenizer: Any) -> None:
    single = greedy_generate(trained_model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=1)
    batched = greedy_generate(trained_model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=8)
    uneven = greedy_generate(trained_model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=3)
    assert len({len(encode(tokenizer, p)) for p in PROMPTS}) > 3
    assert len(set(single)) > 2, single  # the outputs depend on the prompt
    assert batched == single
    assert uneven == single


def test_matches_a_plain_argmax_loop(trained_model: Any, tokenizer: Any) -> None:
    outputs = greedy_generate(trained_model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=8)
    expected = [argmax_loop(trained_model, tokenizer, p, NEW_TOKENS) for p in PROMPTS]
    assert outputs == expected


def test_random_model_batched_equals_single(tiny_model: Any, tokenizer: Any) -> None:
    single = greedy_generate(tiny_model, tokenizer, PROMPTS, 8, batch_size=1)
    batched = greedy_generate(tiny_model, tokenizer, PROMPTS, 8, batch_size=8)
    assert len(set(single)) > 2
    assert batched == single


def test_stops_cut_the_outputs(trained_model: Any, tokenizer: Any) -> None:
    free = greedy_generate(trained_model, tokenizer, PROMPTS, NEW_TOKENS, batch_size=8)
    stops = ["\n", "."]
    assert any(s in o for o in free for s in stops), free  # some output is really cut
    stopped = greedy_generate(trained_model, tokenizer, PROMPTS, NEW_TOKENS, stops=stops)
    assert stopped == [cut_at_stops(o, stops) for o in free]
    assert not any(s in o for o in stopped for s in stops)


def test_no_prompts_and_token_budget(trained_model: Any, tokenizer: Any) -> None:
    assert greedy_generate(trained_model, tokenizer, [], NEW_TOKENS) == []
    one = greedy_generate(trained_model, tokenizer, PROMPTS[:1], 1)[0]
    longer = greedy_generate(trained_model, tokenizer, PROMPTS[:1], NEW_TOKENS)[0]
    assert one == argmax_loop(trained_model, tokenizer, PROMPTS[0], 1)
    assert longer.startswith(one)


# ---------------------------------------------------------------- ROUGE-L


def test_rouge_l_hand_computed() -> None:
    reference, prediction = "the cat sat on the mat", "the cat on the mat"
    # LCS = "the cat on the mat" = 5 tokens: P = 5/5, R = 5/6, F = 2PR/(P+R) = 10/11
    assert rouge_l(reference, prediction, measure="precision") == pytest.approx(1.0)
    assert rouge_l(reference, prediction, measure="recall") == pytest.approx(5 / 6)
    assert rouge_l(reference, prediction) == pytest.approx(10 / 11)
    assert rouge_l(reference, reference) == pytest.approx(1.0)
    assert rouge_l(reference, "dog") == 0.0
    # order matters: LCS of "a b c d" and "d c b a" is one token
    assert rouge_l("a b c d", "d c b a", measure="recall") == pytest.approx(1 / 4)


def test_rouge_l_stemming_and_case() -> None:
    assert rouge_l("running dogs", "run dog", measure="recall", stem=True) == pytest.approx(1.0)
    assert rouge_l("running dogs", "run dog", measure="recall", stem=False) == 0.0
    # rouge-score lowercases and drops punctuation
    assert rouge_l("The Cat.", "the cat", measure="fmeasure") == pytest.approx(1.0)


def test_mean_rouge_l() -> None:
    refs = ["the cat sat on the mat", "a b"]
    preds = ["the cat on the mat", "a b"]
    assert mean_rouge_l(refs, preds) == pytest.approx((10 / 11 + 1.0) / 2)
    assert mean_rouge_l(refs, preds, measure="recall") == pytest.approx((5 / 6 + 1.0) / 2)
    with pytest.raises(ValueError):
        mean_rouge_l(refs, preds[:1])


def test_a_tokenizer_without_a_pad_token_pads_with_eos(tokenizer: Any, tmp_path: Path) -> None:
    """Llama-2's and Llama-3.2's tokenizers have no pad token: generation and likelihood
    batches must pad with EOS (as MUSE and open-unlearning do), not crash."""
    import json

    from bilevel_unlearning.evaluation.likelihood import labelled_logprobs
    from bilevel_unlearning.models.hf import load_tokenizer
    from bilevel_unlearning.provenance import pad_token_record

    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["pad_token"] = None  # as meta-llama/Llama-2-7b-hf ships it
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    padless = load_tokenizer(tmp_path)
    assert padless.pad_token_id == padless.eos_token_id
    assert pad_token_record(tmp_path).startswith("eos")
    model = tiny_llama(TINY_ARCHITECTURE, padless, SEED)
    texts = greedy_generate(model, padless, PROMPTS[:3], 4, batch_size=3)
    assert len(texts) == 3
    examples = [text_example(padless, p, 64) for p in PROMPTS[:3]]
    assert len(labelled_logprobs(model, examples, padless.pad_token_id, 3)) == 3
