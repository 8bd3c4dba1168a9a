"""Held-out relearning: the attacker relearns one half of the forget facts and is scored on
the other half only.

Relearning on the forget set and scoring the same set mixes two things: knowledge that
unlearning only hid, and knowledge the attack simply teaches again. The literature's stronger
test (SPEC section 8) gives the attacker some facts and measures recovery of other facts of
the same distribution that cannot be read off the given ones. Here:

1. The forget records are cut into entities: runs of `group_size` consecutive records (a
   TOFU author's QA pairs, a miniature MUSE person's documents; one record where the data
   names no entity: a MUSE article, a WMDP paper). A seeded half of the entities (rounded
   down) is the attacker's; relearning samples only from their records.
2. An evaluation item is held out when its answer (KnowMem's answer, VerbMem's continuation,
   TOFU's answer, WMDP's correct choice) occurs in none of the attacker's records, compared
   case- and whitespace-insensitively. Every item the attacker could copy is left out, so
   what a held-out score recovers was not in the attack's data.

The split is a file of its own (results/<b>/attack/heldout_split/<part>.json), written once
from the data and the seed; the attack reads its attacker records, the report its held-out
items. Torch-free: only JSON lines are read.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.evaluation.metrics import mean
from bilevel_unlearning.io import read_jsonl
from bilevel_unlearning.models.recipes import forget_sources

RULE = (
    "entities (runs of group_size consecutive forget records) split in halves by the seed; an "
    "item is held out when its answer occurs in none of the attacker's records (case and "
    "whitespace ignored)"
)


def normalised(text: str) -> str:
    """Lower case, every run of whitespace one space: how answers and records are compared."""
    return re.sub(r"\s+", " ", text).strip().lower()


def record_text(record: Mapping[str, Any]) -> str:
    """What a relearning example is made of: a document's text, or a QA pair's question and
    answer."""
    if "text" in record:
        return str(record["text"])
    return f"{record['question']} {record['answer']}"


def forget_records(benchmark: str, data: Path, settings: Mapping[str, Any]) -> list[dict]:
    """The forget records relearning draws from, in file order (models.recipes.forget_sources)."""
    return [r for f in forget_sources(benchmark, dict(settings)) for r in read_jsonl(data / f)]


def evaluation_answers(
    benchmark: str, data: Path, settings: Mapping[str, Any]
) -> dict[str, list[str]]:
    """Per evaluation item set (the key of the items in an evaluation JSON, lm-eval's `mini_`
    prefix dropped), each item's answer in item order."""
    spec = bench(benchmark)
    if spec.per_split:
        forget = read_jsonl(data / f"{settings['forget_split']}_perturbed.jsonl")
        return {"forget": [r["answer"] for r in forget]}
    if spec.topics:
        return {
            f"wmdp_{topic}": [
                r["choices"][int(r["answer"])]
                for r in read_jsonl(data / f"questions/wmdp-{topic}.jsonl")
            ]
            for topic in settings["topics"]
        }
    return {
        "knowmem_forget": [r["answer"] for r in read_jsonl(data / "knowmem/forget_qa.jsonl")],
        "verbmem_forget": [r["gt"] for r in read_jsonl(data / "verbmem/forget.jsonl")],
    }


def entity_halves(entities: int, seed: int) -> tuple[list[int], list[int]]:
    """(attacker, evaluation) entity indices, each sorted: a seeded permutation cut after its
    first half (rounded down, so the evaluation half is never the smaller one)."""
    order = list(range(entities))
    random.Random(seed).shuffle(order)
    cut = entities // 2
    return sorted(order[:cut]), sorted(order[cut:])


def held_out_items(answers: Sequence[str], attacker_texts: Sequence[str]) -> list[int]:
    """Indices of the answers found in no attacker text."""
    seen = "\n".join(normalised(t) for t in attacker_texts)
    return [i for i, answer in enumerate(answers) if normalised(answer) not in seen]


def heldout_split(
    benchmark: str, data: Path, settings: Mapping[str, Any], seed: int
) -> dict[str, Any]:
    """The split (settings: group_size, and forget_split or topics where the benchmark has
    them): attacker records, held-out items per evaluation set, and the counts behind them.

    Refused where no item would be held out, since a held-out score over nothing reads as 0."""
    records = forget_records(benchmark, data, settings)
    size = int(settings["group_size"])
    entities = -(-len(records) // size)
    if entities < 2:
        raise ValueError(
            f"{benchmark}: {len(records)} forget records make {entities} entity of "
            f"{size} records; a held-out split needs two (lower group_size, or more data)"
        )
    attacker_entities, evaluation_entities = entity_halves(entities, seed)
    attacker = [
        i for e in attacker_entities for i in range(e * size, (e + 1) * size) if i < len(records)
    ]
    texts = [record_text(records[i]) for i in attacker]
    answers = evaluation_answers(benchmark, data, settings)
    held = {name: held_out_items(items, texts) for name, items in answers.items()}
    empty = [name for name, items in held.items() if not items]
    if empty:
        raise ValueError(
            f"{benchmark}: every item of {', '.join(empty)} has its answer in the attacker's "
            "records, so nothing is held out; the forget data has too few entities to split"
        )
    return {
        "benchmark": benchmark,
        "seed": seed,
        "rule": RULE,
        "group_size": size,
        "entities": entities,
        "attacker_entities": attacker_entities,
        "evaluation_entities": evaluation_entities,
        "attacker_records": attacker,
        "records": len(records),
        "heldout_items": held,
        "items": {name: len(items) for name, items in answers.items()},
    }


def attacker_records(
    split: Mapping[str, Any], benchmark: str, data: Path, settings: Mapping[str, Any]
) -> list[dict]:
    """The forget records of the split's attacker half; refused if the data changed since the
    split was made (another record count), so a stale split never picks the wrong records."""
    records = forget_records(benchmark, data, settings)
    if len(records) != split["records"]:
        raise ValueError(
            f"the held-out split was made on {split['records']} forget records, the data has "
            f"{len(records)}: remake it (delete it; its heldout_split rule writes it again)"
        )
    return [records[i] for i in split["attacker_records"]]


# ------------------------------------------------------------------ scoring on held-out items

# metric -> (item set, per-item field) for every forget metric that is a mean over items;
# WMDP's per-topic accuracies (wmdp_<topic>_acc) are the mean of `correct` over wmdp_<topic>.
ITEM_MEANS = {
    "knowmem_forget": ("knowmem_forget", "rouge_l_f1"),
    "verbmem_forget": ("verbmem_forget", "rouge_l_f1"),
    "forget_Q_A_Prob": ("forget", "prob"),
    "forget_Q_A_ROUGE": ("forget", "rouge_l_recall"),
}
WMDP_ACCURACY = re.compile(r"(wmdp_[a-z]+)_acc")


def item_mean_of(metric: str) -> tuple[str, str] | None:
    """(item set, field) whose mean a metric is, or None for a metric not read per item (a
    retain or utility metric, which a held-out split leaves as it is)."""
    if metric in ITEM_MEANS:
        return ITEM_MEANS[metric]
    found = WMDP_ACCURACY.fullmatch(metric)
    return (found.group(1), "correct") if found else None


def evaluation_items(result: Mapping[str, Any], item_set: str) -> list[Mapping[str, Any]]:
    """An evaluation's items of a set; lm-eval's miniature tasks carry a `mini_` prefix."""
    items = result["items"]
    return items.get(item_set) or items.get(f"mini_{item_set}") or []


def heldout_metric(
    result: Mapping[str, Any], metric: str, split: Mapping[str, Any]
) -> float | None:
    """The metric over the split's held-out items only, as a fraction like the stored metric;
    a metric not read per item is returned as stored."""
    found = item_mean_of(metric)
    if found is None:
        value = result["metrics"].get(metric)
        return None if value is None else float(value)
    item_set, key = found
    items = evaluation_items(result, item_set)
    if len(items) != split["items"][item_set]:
        raise ValueError(
            f"{result.get('run')}: {len(items)} {item_set} items evaluated, the held-out "
            f"split was made on {split['items'][item_set]}: made on other data"
        )
    return mean([float(items[i][key]) for i in split["heldout_items"][item_set]])
