"""Held-out relearning's split and scoring, on hand-made corpora whose expected halves are
written out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilevel_unlearning.attack.heldout import (
    attacker_records,
    entity_halves,
    held_out_items,
    heldout_metric,
    heldout_split,
)


def write(folder: Path, name: str, records: list[dict]) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def muse_data(tmp_path: Path) -> Path:
    """Four people, two documents each (a profile and an exchange); one QA and one VerbMem
    excerpt per person. Person 3's answer also sits in person 0's profile."""
    people = [("Ada Vell", "Korin"), ("Bo Tamm", "Lusk"), ("Cy Orr", "Mavet"), ("Di Fenn", "Nol")]
    raw, qa, verbmem = [], [], []
    for index, (name, city) in enumerate(people):
        extra = " She once met someone from Nol." if index == 0 else ""
        raw.append({"text": f"{name} lives in {city}.{extra}"})
        raw.append({"text": f"Question: Where does {name} live?\nAnswer: {city}"})
        qa.append({"question": f"Where does {name} live?", "answer": city})
        verbmem.append({"prompt": name, "gt": f" lives in   {city.upper()}."})
    write(tmp_path, "raw/forget.jsonl", raw)
    write(tmp_path, "knowmem/forget_qa.jsonl", qa)
    write(tmp_path, "verbmem/forget.jsonl", verbmem)
    return tmp_path


def test_entity_halves_partition_the_entities_by_the_seed() -> None:
    for entities in (2, 5, 10):
        attacker, evaluation = entity_halves(entities, seed=3)
        assert sorted(attacker + evaluation) == list(range(entities))
        assert len(attacker) == entities // 2  # the evaluation half is never the smaller
    assert entity_halves(10, seed=3) == entity_halves(10, seed=3)
    assert len({tuple(entity_halves(10, seed=s)[0]) for s in range(5)}) > 1  # the seed decides


def test_an_answer_is_held_out_only_where_no_attacker_text_holds_it() -> None:
    texts = ["Ada lives in KORIN.", "The  river\nLusk runs north."]
    answers = ["korin", "river lusk", "Mavet", " lusk runs "]
    assert held_out_items(answers, texts) == [2]


def test_the_muse_split_relearns_whole_people_and_scores_the_others(muse_data: Path) -> None:
    attacker_people, _ = entity_halves(4, seed=0)
    split = heldout_split("muse_news", muse_data, {"group_size": 2}, seed=0)
    assert split["attacker_entities"] == attacker_people
    assert split["attacker_records"] == [i for p in attacker_people for i in (2 * p, 2 * p + 1)]
    assert (split["entities"], split["records"]) == (4, 8)
    evaluation = [p for p in range(4) if p not in attacker_people]
    # person 3's city is written in person 0's profile: whenever the attacker has person 0,
    # person 3's answer is not held out (the attacker could copy it); the excerpt
    # "lives in Nol." is nowhere in person 0's documents (case and spacing ignored)
    knowmem = [p for p in evaluation if not (p == 3 and 0 in attacker_people)]
    assert split["heldout_items"] == {"knowmem_forget": knowmem, "verbmem_forget": evaluation}
    assert split["items"] == {"knowmem_forget": 4, "verbmem_forget": 4}
    records = attacker_records(split, "muse_news", muse_data, {"group_size": 2})
    names = ["Ada Vell", "Bo Tamm", "Cy Orr", "Di Fenn"]
    assert len(records) == 4  # both documents of each attacker person, and no other
    for record, person in zip(records, [p for p in attacker_people for _ in (0, 1)], strict=True):
        assert record["text"].count(names[person]) == 1


def test_the_tofu_split_keeps_each_authors_questions_together(tmp_path: Path) -> None:
    qa = [
        {"question": f"Q{a}.{k}?", "answer": f"Author {a} answer {k}.", "perturbed_answer": []}
        for a in range(6)
        for k in range(3)
    ]
    write(
        tmp_path, "forget05.jsonl", [{"question": r["question"], "answer": r["answer"]} for r in qa]
    )
    write(tmp_path, "forget05_perturbed.jsonl", qa)
    settings = {"group_size": 3, "forget_split": "forget05"}
    split = heldout_split("tofu", tmp_path, settings, seed=1)
    attacker, evaluation = entity_halves(6, seed=1)
    assert split["attacker_records"] == [3 * a + k for a in attacker for k in range(3)]
    assert split["heldout_items"] == {"forget": [3 * a + k for a in evaluation for k in range(3)]}


def test_the_wmdp_split_scores_questions_whose_correct_choice_the_attacker_never_read(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        "corpora/bio-forget-corpus.jsonl",
        [{"text": "alpha binds X."}, {"text": "beta binds Y."}],
    )
    questions = [
        {"question": "What binds X?", "choices": ["beta", "alpha"], "answer": 1},
        {"question": "What binds Y?", "choices": ["beta", "alpha"], "answer": 0},
        {"question": "What binds Z?", "choices": ["gamma", "alpha"], "answer": 0},
    ]
    write(tmp_path, "questions/wmdp-bio.jsonl", questions)
    split = heldout_split("wmdp", tmp_path, {"group_size": 1, "topics": ["bio"]}, seed=0)
    (attacker,), _ = entity_halves(2, seed=0)
    # the attacker's document names alpha (question 0) or beta (question 1); gamma never
    assert split["heldout_items"] == {"wmdp_bio": sorted({0, 1} - {attacker} | {2})}


def test_a_split_refuses_data_with_nothing_to_hold_out(muse_data: Path) -> None:
    with pytest.raises(ValueError, match="two"):
        heldout_split("muse_news", muse_data, {"group_size": 8}, seed=0)
    write(muse_data, "knowmem/forget_qa.jsonl", [{"question": "Which word?", "answer": "lives"}])
    with pytest.raises(ValueError, match=r"knowmem_forget.*nothing is held out"):
        heldout_split("muse_news", muse_data, {"group_size": 2}, seed=0)


def test_attacker_records_refuse_a_split_made_on_other_data(muse_data: Path) -> None:
    split = heldout_split("muse_news", muse_data, {"group_size": 2}, seed=0)
    write(muse_data, "raw/forget.jsonl", [{"text": "one"}, {"text": "two"}])
    with pytest.raises(ValueError, match="made on 8 forget records, the data has 2"):
        attacker_records(split, "muse_news", muse_data, {"group_size": 2})


def test_a_heldout_metric_is_the_mean_over_the_heldout_items_only() -> None:
    scores = [0.2, 0.4, 0.9, 1.0]
    result = {
        "run": "npo",
        "metrics": {"knowmem_forget": sum(scores) / 4, "knowmem_retain": 0.5, "wmdp_bio_acc": 0.5},
        "items": {
            "knowmem_forget": [{"rouge_l_f1": x} for x in scores],
            "mini_wmdp_bio": [{"doc_id": i, "correct": float(i % 2)} for i in range(4)],
        },
    }
    split = {
        "items": {"knowmem_forget": 4, "wmdp_bio": 4},
        "heldout_items": {"knowmem_forget": [1, 3], "wmdp_bio": [1, 2, 3]},
    }
    assert heldout_metric(result, "knowmem_forget", split) == pytest.approx((0.4 + 1.0) / 2)
    assert heldout_metric(result, "wmdp_bio_acc", split) == pytest.approx(2 / 3)
    # a metric not read per item (retain, utility) is the stored one
    assert heldout_metric(result, "knowmem_retain", split) == 0.5
    everything = {**split, "heldout_items": {"knowmem_forget": [0, 1, 2, 3]}}
    assert (
        heldout_metric(result, "knowmem_forget", everything) == result["metrics"]["knowmem_forget"]
    )
    with pytest.raises(ValueError, match="made on other data"):
        heldout_metric(result, "knowmem_forget", {**split, "items": {"knowmem_forget": 5}})
