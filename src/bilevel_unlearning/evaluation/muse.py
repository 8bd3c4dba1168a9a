"""MUSE's metrics: VerbMem, KnowMem (forget and retain) and PrivLeak (SPEC section 5).

Each returns the aggregate and the per-item scores it came from, so a table value can be
traced back to the items and generations behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.evaluation.generation import greedy_generate
from bilevel_unlearning.evaluation.likelihood import (
    labelled_logprobs,
    labelled_token_stats,
    text_scoring_example,
)
from bilevel_unlearning.evaluation.metrics import (
    mean,
    mia_scores,
    min_k_score,
    privleak,
    privleak_auc,
)
from bilevel_unlearning.evaluation.rouge import rouge_l
from bilevel_unlearning.io import read_jsonl

KNOWMEM_STOPS = ("\n\n", "Question")
# MUSE's published AUC of the retrain oracles on the real corpora (reported beside ours).
PUBLISHED_AUC_RETRAIN = {"muse_news": 0.4772, "muse_books": 0.5393}


def knowmem_prompts(icl: Sequence[Mapping[str, str]], qa: Sequence[Mapping[str, str]]) -> list[str]:
    """MUSE's few-shot prompt: every ICL pair, then the question with 'Answer: ' to complete."""
    shots = "".join(f"Question: {x['question']}\nAnswer: {x['answer']}\n\n" for x in icl)
    return [f"{shots}Question: {x['question']}\nAnswer: " for x in qa]


def rouge_items(references: Sequence[str], outputs: Sequence[str]) -> list[dict[str, Any]]:
    """Per item: the reference, the generation and its ROUGE-L F1 (no stemming, as MUSE)."""
    return [
        {"reference": r, "output": o, "rouge_l_f1": rouge_l(r, o)}
        for r, o in zip(references, outputs, strict=True)
    ]


def knowmem(
    model: Any, tokenizer: Any, data: Path, split: str, max_new_tokens: int, batch_size: int
) -> list[dict[str, Any]]:
    """KnowMem on forget_qa or retain_qa: greedy answers cut at a blank line or 'Question'."""
    qa = read_jsonl(data / f"knowmem/{split}_qa.jsonl")
    icl = read_jsonl(data / f"knowmem/{split}_qa_icl.jsonl")
    outputs = greedy_generate(
        model,
        tokenizer,
        knowmem_prompts(icl, qa),
        max_new_tokens,
        batch_size=batch_size,
        stops=KNOWMEM_STOPS,
    )
    return rouge_items([x["answer"] for x in qa], outputs)


def verbmem_reference(tokenizer: Any, text: str, count: int) -> str:
    """VerbMem's ground truth as MUSE's code cuts it: tokenised WITH the BOS token, cut to the
    continuation's token count, decoded without special tokens; so a 128-token continuation is
    compared with 127 tokens of text (BOS takes one place)."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"][:count]
    return tokenizer.decode(ids, skip_special_tokens=True)


def verbmem(
    model: Any, tokenizer: Any, data: Path, max_new_tokens: int, batch_size: int
) -> list[dict[str, Any]]:
    """VerbMem: the continuation of each forget prompt against the true continuation."""
    records = read_jsonl(data / "verbmem/forget.jsonl")
    outputs = greedy_generate(
        model, tokenizer, [r["prompt"] for r in records], max_new_tokens, batch_size=batch_size
    )
    truths = [verbmem_reference(tokenizer, r["gt"], max_new_tokens) for r in records]
    return rouge_items(truths, outputs)


PRIVLEAK_SPLITS = ("forget", "holdout")


def privleak_texts(data: Path) -> dict[str, list[str]]:
    return {
        split: [r["text"] for r in read_jsonl(data / f"privleak/{split}.jsonl")]
        for split in PRIVLEAK_SPLITS
    }


def min_k_scores(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    k: float,
    max_length: int | None,
    batch_size: int,
) -> list[float]:
    """Min-K% of each text; max_length None scores the whole text, as MUSE's code does."""
    examples = [text_scoring_example(tokenizer, t, max_length) for t in texts]
    logprobs = labelled_logprobs(model, examples, tokenizer.pad_token_id, batch_size)
    return [min_k_score(lp, k) for lp in logprobs]


def privleak_scores(
    model: Any, tokenizer: Any, data: Path, k: float, max_length: int | None, batch_size: int
) -> dict[str, list[float]]:
    """Min-K% of every privleak forget and holdout text."""
    return {
        split: min_k_scores(model, tokenizer, texts, k, max_length, batch_size)
        for split, texts in privleak_texts(data).items()
    }


def mia_suite(
    model: Any,
    tokenizer: Any,
    texts: Mapping[str, Sequence[str]],
    max_length: int | None,
    batch_size: int,
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[list[float]]]]:
    """MUSE's full set of membership scores for every privleak forget and holdout text, and
    each text's token log-probabilities (Min-K% reads them: one forward pass serves both)."""
    scores, logprobs = {}, {}
    for split, split_texts in texts.items():
        examples = [text_scoring_example(tokenizer, t, max_length) for t in split_texts]
        lowered = [text_scoring_example(tokenizer, t.lower(), max_length) for t in split_texts]
        stats = labelled_token_stats(model, examples, tokenizer.pad_token_id, batch_size)
        lower = labelled_logprobs(model, lowered, tokenizer.pad_token_id, batch_size)
        triples = zip(stats, lower, split_texts, strict=True)
        scores[split] = [mia_scores(st, lp, t) for st, lp, t in triples]
        logprobs[split] = [[lp for lp, _, _ in st] for st in stats]
    return scores, logprobs


def mia_slug(name: str) -> str:
    """PPL/lower -> ppl_lower, Min-5% -> min_5, Min-40%++ -> min_40_plus_plus."""
    slug = name.lower().replace("%++", "_plus_plus").replace("%", "").replace("/", "_")
    return slug.replace("-", "_")


def mia_aucs(scores: Mapping[str, list[Mapping[str, float]]]) -> dict[str, float]:
    """The forget-vs-holdout AUC of each score (MUSE's direction, as PrivLeak's)."""
    names = scores["forget"][0].keys()
    return {
        name: privleak_auc(
            [x[name] for x in scores["forget"]], [x[name] for x in scores["holdout"]]
        )
        for name in names
    }


def evaluate_muse(
    model: Any,
    tokenizer: Any,
    data: Path,
    settings: Mapping[str, Any],
    auc_retrain: float | None,
    published_auc_retrain: float | None = None,
    mia_retrain: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every MUSE metric of one model; auc_retrain None means this model is the oracle.

    PrivLeak's reference: MUSE's published retrain AUC where given (the real corpora: the
    paper's rows use it, as the authors' evaluation does), else the run's own retrain model's
    AUC (the miniature). Both gaps are recorded when both exist."""
    batch = settings["batch_size"]
    items = {
        "verbmem_forget": verbmem(
            model, tokenizer, data, settings["verbmem_max_new_tokens"], batch
        ),
        **{
            f"knowmem_{split}": knowmem(
                model, tokenizer, data, split, settings["knowmem_max_new_tokens"], batch
            )
            for split in ("forget", "retain")
        },
    }
    k, max_length = settings["privleak_k"], settings["privleak_max_length"]
    mia, logprobs = mia_suite(model, tokenizer, privleak_texts(data), max_length, batch)
    mink = {split: [min_k_score(lp, k) for lp in logprobs[split]] for split in logprobs}
    auc = privleak_auc(mink["forget"], mink["holdout"])
    own = auc if auc_retrain is None else auc_retrain
    reference = own if published_auc_retrain is None else published_auc_retrain
    metrics = {name: mean([x["rouge_l_f1"] for x in rows]) for name, rows in items.items()}
    metrics.update(privleak=privleak(auc, reference), privleak_auc=auc, auc_retrain=reference)
    if published_auc_retrain is not None:
        metrics.update(
            published_auc_retrain=published_auc_retrain,
            own_auc_retrain=own,
            privleak_own_retrain=privleak(auc, own),
        )
    result = {"metrics": metrics, "items": {**items, "privleak_min_k": mink}}
    aucs = mia_aucs(mia)
    # the oracle's own AUCs; none from an oracle evaluated without the suite
    retrain = aucs if auc_retrain is None else (mia_retrain or {})
    result["mia"] = {
        name: {
            "auc": mia_auc,
            "auc_retrain": retrain.get(name),
            "privleak": privleak(mia_auc, retrain[name]) if name in retrain else None,
        }
        for name, mia_auc in aucs.items()
    }
    for name, entry in result["mia"].items():  # the supplementary table reads these
        metrics[f"privleak_{mia_slug(name)}"] = entry["privleak"]
    result["items"]["mia_scores"] = mia
    return result
