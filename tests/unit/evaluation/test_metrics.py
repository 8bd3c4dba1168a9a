"""Each benchmark statistic against values computed by hand on tiny inputs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from bilevel_unlearning.evaluation import metrics as m
from bilevel_unlearning.evaluation.likelihood import labelled_logprobs, text_scoring_example
from bilevel_unlearning.evaluation.muse import knowmem_prompts, privleak_scores
from bilevel_unlearning.models.encoding import qa_example


def test_min_k_takes_the_lowest_share() -> None:
    logprobs = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert m.min_k_score(logprobs, 0.4) == pytest.approx(4.5)  # int(0.4*5)=2: -5, -4
    assert m.min_k_score(logprobs, 0.1) == pytest.approx(5.0)  # at least one token
    assert m.min_k_score(logprobs, 1.0) == pytest.approx(3.0)  # all: minus the mean
    with pytest.raises(ValueError, match="no scored tokens"):
        m.min_k_score([], 0.4)


def test_auc_hand_cases() -> None:
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered right
    assert m.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert m.auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert m.auc([1, 0], [0.9, 0.1]) == 1.0
    with pytest.raises(ValueError, match="each label"):
        m.auc([1, 1], [0.2, 0.3])


def test_privleak_direction() -> None:
    """Memorised forget texts (low Min-K%) give AUC 0 and PrivLeak -100, as MUSE's target."""
    assert m.privleak_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert m.privleak_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert m.privleak(0.0, 0.5) == pytest.approx(-1.0)  # a fraction; T1 shows it x100 (%)
    assert m.privleak(0.6, 0.5) == pytest.approx(0.2)
    assert m.privleak(0.4772, 0.4772) == 0.0


def test_truth_ratio_takes_the_geometric_mean_of_the_perturbed_answers() -> None:
    """open-unlearning's form: exp(mean log p) = sqrt(0.1 * 0.4) = 0.2, over 0.5 -> 0.4.
    The arithmetic mean (the old form) gives 0.25 / 0.5 = 0.5: the test tells them apart."""
    assert m.truth_ratio(0.5, [0.1, 0.4]) == pytest.approx(0.4)
    assert m.truth_ratio(0.5, [0.1, 0.4]) != pytest.approx(0.5)
    assert m.geometric_mean([0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert m.geometric_mean([0.3, 0.0]) == 0.0


def test_truth_ratio_both_ways() -> None:
    tr = m.truth_ratio(0.5, [0.2, 0.2])
    assert tr == pytest.approx(0.4)
    assert m.truth_ratio_closer_to_one([0.4, 2.0]) == pytest.approx((0.4 + 0.5) / 2)
    assert m.truth_ratio_true_better([0.4, 2.0]) == pytest.approx((0.6 + 0.0) / 2)
    assert m.normalized_prob(0.6, [0.1, 0.2]) == pytest.approx(2 / 3)


def test_ks_p_value_exact_small_samples() -> None:
    assert m.ks_p_value([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == pytest.approx(1.0)
    # fully separated samples of 3 and 3: D = 1, exact two-sided p = 2 / C(6, 3) = 0.1
    assert m.ks_p_value([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)


def test_harmonic_mean() -> None:
    assert m.harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(3 / 1.75)
    assert m.harmonic_mean([0.5] * 9) == pytest.approx(0.5)
    assert m.harmonic_mean([0.9, 0.0, 0.8]) == 0.0
    with pytest.raises(ValueError, match="negative"):
        m.harmonic_mean([0.5, -0.1])


def test_sequence_prob_is_exp_of_mean_logprob() -> None:
    assert m.sequence_prob([-1.0, -3.0]) == pytest.approx(math.exp(-2.0))


def test_knowmem_prompt_format() -> None:
    icl = [{"question": "Q1?", "answer": "A1"}]
    prompts = knowmem_prompts(icl, [{"question": "Q2?", "answer": "A2"}])
    assert prompts == ["Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: "]


@torch.no_grad()
def one_by_one(model: Any, ids: list[int], labels: list[int]) -> list[float]:
    """log p(token | prefix) of the labelled tokens, for one sequence without padding."""
    logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits[:-1], dim=-1)
    return [float(logprobs[t - 1, ids[t]]) for t in range(1, len(ids)) if labels[t] != -100]


def test_batched_logprobs_equal_one_at_a_time(tiny_model: Any, tokenizer: Any) -> None:
    texts = ["a short one", "a somewhat longer text about nothing at all", "mid length text"]
    examples = [text_scoring_example(tokenizer, t, 64) for t in texts]
    examples.append(qa_example(tokenizer, "Who wrote it?", "Someone did.", 64))
    batched = labelled_logprobs(tiny_model, examples, tokenizer.pad_token_id, batch_size=3)
    for example, scores in zip(examples, batched, strict=True):
        expected = one_by_one(tiny_model, list(example.input_ids), list(example.labels))
        assert scores == pytest.approx(expected, abs=1e-5)
    # the QA example scores only its answer tokens
    answer_tokens = sum(label != -100 for label in examples[-1].labels)
    assert len(batched[-1]) == answer_tokens < len(examples[-1].input_ids) - 1


def test_privleak_scores_cover_every_text(tiny_model: Any, tokenizer: Any, data_root: Path) -> None:
    scores = privleak_scores(tiny_model, tokenizer, data_root / "muse_news", 0.4, 32, 4)
    holdout = (data_root / "muse_news/privleak/holdout.jsonl").read_text().splitlines()
    assert len(scores["holdout"]) == len(holdout)
    assert all(s > 0 for s in scores["forget"] + scores["holdout"])  # minus log-probs


class WordTokenizer:
    """A tokenizer of whole words with a BOS token: enough to hand-check VerbMem's cut."""

    bos = "<s>"

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        ids = [self.vocab(w) for w in text.split()]
        return {"input_ids": ([0] if add_special_tokens else []) + ids}

    def vocab(self, word: str) -> int:
        return 1 + ord(word[0]) - ord("a")

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        words = [self.bos if i == 0 else chr(ord("a") + i - 1) for i in ids]
        return " ".join(w for w in words if not (skip_special_tokens and w == self.bos))


def test_verbmem_reference_is_cut_with_the_bos_token_as_muse_cuts_it() -> None:
    """A 3-token continuation is compared with BOS + 2 words, i.e. 2 words of text: the old
    cut (no BOS) kept 3 words."""
    from bilevel_unlearning.evaluation.muse import verbmem_reference

    assert verbmem_reference(WordTokenizer(), "a b c d", 3) == "a b"
    assert verbmem_reference(WordTokenizer(), "a b c d", 10) == "a b c d"


def test_min_k_scores_whole_texts_when_no_length_is_set(tiny_model: Any, tokenizer: Any) -> None:
    """MUSE's code never truncates: max_length None scores every token."""
    from bilevel_unlearning.evaluation.muse import min_k_scores

    text = " ".join(["the long text goes on"] * 30)
    whole = text_scoring_example(tokenizer, text, None)
    assert len(whole.input_ids) > 40
    cut, full = (min_k_scores(tiny_model, tokenizer, [text], 1.0, n, 2)[0] for n in (8, None))
    expected = one_by_one(tiny_model, list(whole.input_ids), list(whole.labels))
    assert full == pytest.approx(-sum(expected) / len(expected), rel=1e-5)
    assert cut != pytest.approx(full)


def test_privleak_uses_the_published_retrain_auc_and_keeps_the_own_one_beside(
    tiny_model: Any, tokenizer: Any, data_root: Path
) -> None:
    """The paper's rows divide by MUSE's constant (0.4772 on News), as the authors' code; the
    gap to the run's own retrain model is recorded beside it."""
    from bilevel_unlearning.evaluation.muse import evaluate_muse

    settings = {
        "batch_size": 8,
        "verbmem_max_new_tokens": 4,
        "knowmem_max_new_tokens": 4,
        "privleak_k": 0.4,
        "privleak_max_length": None,
    }
    data = data_root / "muse_news"
    own = evaluate_muse(tiny_model, tokenizer, data, settings, 0.6)["metrics"]
    paper = evaluate_muse(tiny_model, tokenizer, data, settings, 0.6, 0.4772)["metrics"]
    auc = paper["privleak_auc"]
    assert paper["privleak"] == pytest.approx((auc - 0.4772) / 0.4772)
    assert paper["privleak_own_retrain"] == pytest.approx((auc - 0.6) / 0.6)
    assert own["privleak"] == paper["privleak_own_retrain"] and "own_auc_retrain" not in own


def test_the_mia_suite_agrees_with_privleak_and_needs_the_oracles_aucs(
    tiny_model: Any, tokenizer: Any, data_root: Path
) -> None:
    from bilevel_unlearning.evaluation.muse import evaluate_muse

    settings = {
        "batch_size": 8,
        "verbmem_max_new_tokens": 2,
        "knowmem_max_new_tokens": 2,
        "privleak_k": 0.4,
        "privleak_max_length": None,
    }
    data = data_root / "muse_news"
    oracle = evaluate_muse(tiny_model, tokenizer, data, settings, None)
    assert oracle["mia"]["Min-40%"]["auc"] == pytest.approx(oracle["metrics"]["privleak_auc"])
    assert all(entry["privleak"] == 0.0 for entry in oracle["mia"].values())  # itself
    aucs = {name: 0.5 for name in oracle["mia"]}
    row = evaluate_muse(tiny_model, tokenizer, data, settings, 0.5, None, aucs)
    ppl = row["mia"]["PPL"]
    assert row["metrics"]["privleak_ppl"] == pytest.approx((ppl["auc"] - 0.5) / 0.5)
    without = evaluate_muse(tiny_model, tokenizer, data, settings, 0.5, None, None)
    assert without["metrics"]["privleak_ppl"] is None  # an oracle without the suite: no gap


def test_mia_scores_are_musesprivleak_scores_computed_by_hand() -> None:
    """Five tokens with log-probs -1..-5; the lowercased text -2 each; the zlib length of the
    text computed independently."""
    import zlib

    stats = [(-float(i), -2.0, 1.0) for i in range(1, 6)]
    scores = m.mia_scores(stats, [-2.0] * 5, "Some Text")
    assert scores["PPL"] == pytest.approx(3.0)  # MUSE's "PPL" is the mean token NLL
    assert scores["PPL/lower"] == pytest.approx(3.0 / 2.0)
    assert scores["PPL/zlib"] == pytest.approx(3.0 / len(zlib.compress(b"Some Text")))
    assert scores["Min-40%"] == pytest.approx((5 + 4) / 2)  # int(5 * 0.4) = 2 lowest
    assert scores["Min-5%"] == pytest.approx(5.0)  # at least one token
    # Min-K%++: (lp - mu) / sigma = 1, 0, -1, -2, -3; the lowest two -3, -2: minus their mean
    assert scores["Min-40%++"] == pytest.approx(2.5)
    assert set(scores) >= {"Min-10%", "Min-20%", "Min-30%", "Min-50%", "Min-60%"}


def test_token_stats_give_the_mean_and_spread_of_the_next_token_distribution(
    tiny_model: Any, tokenizer: Any
) -> None:
    from bilevel_unlearning.evaluation.likelihood import labelled_token_stats

    example = text_scoring_example(tokenizer, "a short text about it", 32)
    (stats,) = labelled_token_stats(tiny_model, [example], tokenizer.pad_token_id)
    ids = list(example.input_ids)
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny_model(input_ids=torch.tensor([ids])).logits[0], -1)
    position = 0  # the first scored token: ids[1] given ids[0]
    lp = logprobs[position]
    mu = float((lp.exp() * lp).sum())
    sigma = float(((lp.exp() * lp.square()).sum() - mu**2) ** 0.5)
    assert stats[0] == pytest.approx((float(lp[ids[1]]), mu, sigma), rel=1e-4)
    assert len(stats) == len(ids) - 1


def test_privleak_is_undefined_not_a_crash_when_the_oracles_auc_is_zero() -> None:
    assert m.privleak(0.3, 0.0) is None


def test_token_budget_batches_shrink_for_long_texts_and_keep_short_ones_whole() -> None:
    from bilevel_unlearning.evaluation.likelihood import token_budget_batches

    lengths = [10, 3000, 12, 2000, 11, 5000]
    assert token_budget_batches(lengths, 4, batch_tokens=1 << 16) == [[0, 4, 2, 3], [1, 5]]
    batches = token_budget_batches(lengths, 4, batch_tokens=4096)
    assert batches == [[0, 4, 2], [3], [1], [5]]  # 2 x 3000 > 4096; 5000 goes alone
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_bounded_likelihood_passes_equal_the_whole_pass(tiny_model: Any, tokenizer: Any) -> None:
    """Spans of positions through the output layer and token-budget batches change how much is
    alive at once, not the scores; below the bounds they change no bit."""
    from bilevel_unlearning.evaluation import likelihood

    texts = ["alpha beta gamma delta " * k for k in (1, 3, 7, 12)]
    examples = [text_scoring_example(tokenizer, t, None) for t in texts]
    pad = tokenizer.pad_token_id
    whole = list(likelihood._scored_batches(tiny_model, examples, pad, 4, True))
    # the same batch, its log-probabilities taken over spans of one position per example
    vocab = tiny_model.get_output_embeddings().out_features
    tight = list(
        likelihood._scored_batches(tiny_model, examples, pad, 4, True, (1 << 16, 4 * vocab))
    )
    assert len(whole) == len(tight) == 1
    by_example = {}
    for chunk, picked, (mu, sigma), labels in tight:
        for row, index in enumerate(chunk):
            n = int((labels[row] != -100).sum())
            by_example[index] = (picked[row][:n], mu[row][:n], sigma[row][:n])
    chunk, picked, (mu, sigma), labels = whole[0]
    for row, index in enumerate(chunk):
        n = int((labels[row] != -100).sum())
        for a, b in zip(
            (picked[row][:n], mu[row][:n], sigma[row][:n]), by_example[index], strict=True
        ):
            torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    # below the bounds: bit for bit what the model's own logits give
    with torch.no_grad():
        ids = torch.tensor([examples[3].input_ids])
        reference = torch.log_softmax(tiny_model(input_ids=ids).logits.float()[:, :-1], dim=-1)
    own = reference.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)[0]
    assert likelihood.labelled_logprobs(tiny_model, [examples[3]], pad)[0] == own.double().tolist()
