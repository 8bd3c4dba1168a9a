"""TOFU's metrics on one forget split (SPEC section 5).

forget_quality compares this model's per-item truth ratios on the forget set with the retain
oracle's (the DAG evaluates the oracle first and passes its ratios in); model_utility is the
harmonic mean of nine numbers on the retain set, real authors and world facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.evaluation import metrics as m
from bilevel_unlearning.evaluation.generation import greedy_generate
from bilevel_unlearning.evaluation.likelihood import labelled_logprobs
from bilevel_unlearning.evaluation.rouge import rouge_l
from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.models.encoding import ChatFormat, chat_prompt, qa_example

# the utility sets: file, short name, the answer the truth ratio treats as true, probability form
UTILITY_SETS = (
    ("retain_perturbed.jsonl", "retain", "paraphrased_answer", "prob"),
    ("real_authors_perturbed.jsonl", "ra", "answer", "normalised"),
    ("world_facts_perturbed.jsonl", "wf", "answer", "normalised"),
)


def answer_probs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    max_length: int,
    batch_size: int,
    chat: ChatFormat,
) -> list[float]:
    """Length-normalised probability of each (question, answer) under the chat format."""
    examples = [qa_example(tokenizer, q, a, max_length, chat) for q, a in pairs]
    logprobs = labelled_logprobs(model, examples, tokenizer.pad_token_id, batch_size)
    return [m.sequence_prob(lp) for lp in logprobs]


def score_set(
    model: Any,
    tokenizer: Any,
    records: Sequence[Mapping[str, Any]],
    true_field: str,
    settings: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Per item: P(answer), P(true_field), P(each perturbed answer), truth ratio, ROUGE recall."""
    batch, length = settings["batch_size"], settings["max_length"]
    chat = ChatFormat.from_settings(settings)
    pairs: list[tuple[str, str]] = []
    for r in records:
        pairs += [(r["question"], r["answer"]), (r["question"], r[true_field])]
        pairs += [(r["question"], p) for p in r["perturbed_answer"]]
    probs = iter(answer_probs(model, tokenizer, pairs, length, batch, chat))
    prompts = [chat_prompt(tokenizer, r["question"], chat) for r in records]
    outputs = greedy_generate(
        model, tokenizer, prompts, settings["generation_max_new_tokens"], batch_size=batch
    )
    items = []
    for record, output in zip(records, outputs, strict=True):
        answer, true = next(probs), next(probs)
        perturbed = [next(probs) for _ in record["perturbed_answer"]]
        items.append(
            {
                "prob": answer,
                "true_prob": true,
                "perturbed_probs": perturbed,
                "normalised_prob": m.normalized_prob(answer, perturbed),
                "truth_ratio": m.truth_ratio(true, perturbed),
                "output": output,
                "rouge_l_recall": rouge_l(record["answer"], output, measure="recall", stem=True),
            }
        )
    return items


def evaluate_tofu(
    model: Any,
    tokenizer: Any,
    data: Path,
    split: str,
    settings: Mapping[str, Any],
    oracle_truth_ratios: Sequence[float] | None,
) -> dict[str, Any]:
    """Every TOFU metric on one forget split; oracle_truth_ratios None: this is the oracle."""
    forget = read_jsonl(data / f"{split}_perturbed.jsonl")
    items = {"forget": score_set(model, tokenizer, forget, "paraphrased_answer", settings)}
    for file, name, true_field, _ in UTILITY_SETS:
        items[name] = score_set(model, tokenizer, read_jsonl(data / file), true_field, settings)

    def column(name: str, key: str) -> list[float]:
        return [x[key] for x in items[name]]

    forget_ratios = column("forget", "truth_ratio")
    reference = forget_ratios if oracle_truth_ratios is None else list(oracle_truth_ratios)
    if len(reference) != len(forget_ratios):
        raise ValueError(
            f"forget quality's reference has {len(reference)} truth ratios, the {split} set "
            f"{len(forget_ratios)} items: it was made on another forget split (a retain log "
            "is named after the retain model of its split, retain90 for forget10)"
        )
    metrics: dict[str, float] = {
        "forget_quality": m.ks_p_value(forget_ratios, reference),
        "forget_truth_ratio": m.truth_ratio_closer_to_one(forget_ratios),
        "forget_Q_A_Prob": m.mean(column("forget", "prob")),
        "forget_Q_A_ROUGE": m.mean(column("forget", "rouge_l_recall")),
    }
    utility = []
    for _, name, _, prob_form in UTILITY_SETS:
        prob_key = "prob" if prob_form == "prob" else "normalised_prob"
        parts = {
            f"{name}_Q_A_Prob": m.mean(column(name, prob_key)),
            f"{name}_Q_A_ROUGE": m.mean(column(name, "rouge_l_recall")),
            f"{name}_Truth_Ratio": m.truth_ratio_true_better(column(name, "truth_ratio")),
        }
        metrics.update(parts)
        utility += parts.values()
    metrics["model_utility"] = m.harmonic_mean(utility)
    return {"metrics": metrics, "items": items}
