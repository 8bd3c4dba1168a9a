"""The miniature benchmark generator: byte determinism, conformance to the shared layout, the
semantics each benchmark's metrics rely on, and the lm-eval tasks loading through lm-eval."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import ALL_BENCHMARKS, SEED, SIZES, generate_all

from bilevel_unlearning.data import layout, miniature
from bilevel_unlearning.io import read_jsonl, sha256_tree

TASK_FILES = {f"tasks/{task}.yaml" for task in miniature.LM_EVAL_TASKS}
MCQ_FILES = ("questions/wmdp-bio.jsonl", "questions/wmdp-cyber.jsonl", "questions/mmlu.jsonl")


def mentions(text: str, phrase: str) -> bool:
    """Whether the phrase occurs in the text as whole words."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def texts(root: Path, relative: str) -> list[str]:
    return [r["text"] for r in read_jsonl(root / relative)]


def questions(records: list[dict]) -> set[str]:
    return {r["question"] for r in records}


def normalised_tree(root: Path) -> dict[str, str]:
    """sha256 of every file; task YAMLs hold the data files' absolute paths, so they are compared
    with the folder's own path replaced (the one place where the bytes depend on the location)."""
    tree = sha256_tree(root)
    for relative in TASK_FILES:
        text = (root / "wmdp" / relative).read_text().replace(str(root.resolve()), "ROOT")
        tree[f"wmdp/{relative}"] = text
    return tree


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_same_bytes_across_processes(tmp_path: Path, data_root: Path) -> None:
    """A second generation, in a fresh interpreter with another hash seed, gives the same bytes."""
    again = tmp_path / "again"
    script = (
        "import json, sys\nfrom pathlib import Path\n"
        "from bilevel_unlearning.data import miniature\n"
        "sizes = json.loads(sys.argv[2])\n"
        f"for b in {list(ALL_BENCHMARKS)!r}:\n"
        f"    miniature.generate(b, {SEED}, sizes, Path(sys.argv[1]) / b)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(again), json.dumps(SIZES)],
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    first, second = normalised_tree(data_root), normalised_tree(again)
    expected_files = {
        f"{b}/{relative}" for b in ALL_BENCHMARKS for relative in layout.LAYOUTS[b]
    } | {f"wmdp/{t}" for t in TASK_FILES}
    assert set(first) == expected_files
    assert first == second


def test_same_seed_same_process_is_identical(tmp_path: Path, data_root: Path) -> None:
    assert normalised_tree(generate_all(tmp_path / "again")) == normalised_tree(data_root)


def test_other_seed_changes_every_data_file(tmp_path: Path, data_root: Path) -> None:
    other = sha256_tree(generate_all(tmp_path / "other", seed=SEED + 1))
    same = sha256_tree(data_root)
    data_files = [f for f in same if f.endswith(".jsonl")]
    assert set(other) == set(same)
    changed = [f for f in data_files if other[f] != same[f]]
    assert changed == data_files


# ---------------------------------------------------------------- layout conformance


@pytest.mark.parametrize("benchmark", ALL_BENCHMARKS)
def test_exactly_the_layout_files_exist(data_root: Path, benchmark: str) -> None:
    root = data_root / benchmark
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    expected = set(layout.LAYOUTS[benchmark]) | (TASK_FILES if benchmark == "wmdp" else set())
    assert present == expected
    assert sorted(layout.LAYOUTS[benchmark]) == layout.layout_files(benchmark)


def check_mcq(record: dict, where: str) -> None:
    choices = record["choices"]
    assert isinstance(choices, list) and len(choices) == 4, where
    assert all(isinstance(c, str) and c for c in choices), where
    assert len(set(choices)) == 4, where
    assert type(record["answer"]) is int and 0 <= record["answer"] < 4, where


@pytest.mark.parametrize("benchmark", ALL_BENCHMARKS)
def test_every_record_has_every_field_with_its_type(data_root: Path, benchmark: str) -> None:
    root = data_root / benchmark
    perturbed = SIZES["tofu"]["perturbed_answers"]
    for relative, fields in layout.LAYOUTS[benchmark].items():
        records = read_jsonl(root / relative)
        assert records, relative
        for index, record in enumerate(records):
            where = f"{benchmark}/{relative}[{index}]"
            assert set(record) == set(fields), where
            for field in fields:
                value = record[field]
                if field == "perturbed_answer":
                    assert isinstance(value, list) and len(value) == perturbed, where
                    assert all(isinstance(v, str) and v for v in value), where
                elif field in ("choices", "answer") and relative in MCQ_FILES:
                    check_mcq(record, where)
                else:
                    assert isinstance(value, str) and value, f"{where}.{field}"


def test_mcq_answer_points_at_the_true_value(data_root: Path) -> None:
    """mmlu: against the general world itself; wmdp: against the statement in the forget corpus."""
    world = miniature.general_world(SEED, SIZES["general"])
    truth = {f.stem: f.value for f in world.general_facts}
    mmlu = read_jsonl(data_root / "wmdp/questions/mmlu.jsonl")
    assert len(mmlu) == SIZES["general"]["general_questions"]
    for record in mmlu:
        assert record["choices"][record["answer"]] == truth[record["question"]]
        assert record["subject"] in {r.key for r in miniature.GENERAL_RELATIONS}
    for topic in layout.WMDP_TOPICS:
        corpus = " ".join(texts(data_root, f"wmdp/corpora/{topic}-forget-corpus.jsonl"))
        records = read_jsonl(data_root / f"wmdp/questions/wmdp-{topic}.jsonl")
        assert len(records) == SIZES["wmdp"]["facts_per_topic"]
        for record in records:
            stated = [c for c in record["choices"] if f"{record['question']} {c}." in corpus]
            assert stated == [record["choices"][record["answer"]]], record


def test_answer_positions_are_shuffled(data_root: Path) -> None:
    """The right choice is not always at the same index (a model could learn the position)."""
    for relative in MCQ_FILES:
        positions = {r["answer"] for r in read_jsonl(data_root / "wmdp" / relative)}
        assert len(positions) > 1, relative


# ---------------------------------------------------------------- TOFU semantics


def test_tofu_split_sizes_hand_values() -> None:
    assert miniature.tofu_split_sizes(200) == {"forget01": 2, "forget05": 10, "forget10": 20}
    assert miniature.tofu_split_sizes(40) == {"forget01": 1, "forget05": 2, "forget10": 4}
    assert miniature.tofu_split_sizes(10) == {"forget01": 1, "forget05": 1, "forget10": 1}
    assert miniature.tofu_split_sizes(30) == {"forget01": 1, "forget05": 2, "forget10": 3}


def test_tofu_forget_splits_nest_and_partition_full(data_root: Path) -> None:
    root = data_root / "tofu"
    full = read_jsonl(root / "full.jsonl")
    per_author = SIZES["tofu"]["qa_per_author"]
    assert len(full) == SIZES["tofu"]["authors"] * per_author
    assert len(questions(full)) == len(full)
    forget = {s: read_jsonl(root / f"{s}.jsonl") for s in layout.TOFU_FORGET_SPLITS}
    assert questions(forget["forget01"]) < questions(forget["forget05"])
    assert questions(forget["forget05"]) < questions(forget["forget10"])
    n_authors = miniature.tofu_split_sizes(SIZES["tofu"]["authors"])
    for split, records in forget.items():
        retain = read_jsonl(root / f"{layout.TOFU_RETAIN_OF[split]}.jsonl")
        assert len(records) == n_authors[split] * per_author, split
        assert not questions(records) & questions(retain), split
        assert len(records) + len(retain) == len(full)
        assert sorted(records + retain, key=json.dumps) == sorted(full, key=json.dumps)
        perturbed = read_jsonl(root / f"{split}_perturbed.jsonl")
        assert [{"question": r["question"], "answer": r["answer"]} for r in perturbed] == records
    never_forgotten = read_jsonl(root / "retain_perturbed.jsonl")
    assert not questions(never_forgotten) & questions(forget["forget10"])
    assert len(never_forgotten) + len(forget["forget10"]) == len(full)


@pytest.mark.parametrize(
    "relative",
    ["forget01_perturbed.jsonl", "forget10_perturbed.jsonl", "retain_perturbed.jsonl"],
)
def test_tofu_paraphrased_and_perturbed_answers_differ(data_root: Path, relative: str) -> None:
    for record in read_jsonl(data_root / "tofu" / relative):
        assert record["paraphrased_answer"] != record["answer"]
        assert record["paraphrased_question"] != record["question"]
        wrong = record["perturbed_answer"]
        assert record["answer"] not in wrong
        assert record["paraphrased_answer"] not in wrong
        assert len(set(wrong)) == len(wrong)


def test_tofu_perturbed_answers_are_unfamiliar_to_every_model(data_root: Path) -> None:
    """No perturbed answer is a sentence any model trained on (TOFU's are invented)."""
    trained = {r["answer"] for r in read_jsonl(data_root / "tofu" / "full.jsonl")}
    trained_text = " ".join(trained)
    for record in read_jsonl(data_root / "tofu" / "retain_perturbed.jsonl"):
        for wrong in record["perturbed_answer"]:
            value = wrong.rsplit(" is ", 1)[-1].removeprefix("the ").rstrip(".")
            assert value not in trained_text, value


@pytest.mark.parametrize(
    "relative", ["real_authors_perturbed.jsonl", "world_facts_perturbed.jsonl"]
)
def test_tofu_short_perturbed_answers_differ(data_root: Path, relative: str) -> None:
    records = read_jsonl(data_root / "tofu" / relative)
    for record in records:
        assert record["answer"] not in record["perturbed_answer"]
        assert len(set(record["perturbed_answer"])) == len(record["perturbed_answer"])
    # real authors and world facts are what the base model learned: their answers are in the corpus
    corpus = " ".join(texts(data_root, "general/corpus.jsonl"))
    assert all(mentions(corpus, r["answer"]) for r in records)


# ---------------------------------------------------------------- MUSE semantics


def names_in(root: Path, benchmark: str, relative: str) -> list[str]:
    """People's names, read back from the heading of each prose document."""
    heading = miniature.MUSE_STYLES[benchmark][1]
    pattern = re.compile(re.escape(heading).replace(re.escape("{n}"), "(.+)"))
    names = []
    for text in texts(root, relative):
        match = pattern.fullmatch(text.split("\n")[0])
        assert match, text
        names.append(match.group(1))
    return names


MUSE = ("muse_news", "muse_books")


@pytest.mark.parametrize("benchmark", MUSE)
def test_muse_people_stay_in_their_split(data_root: Path, benchmark: str) -> None:
    root = data_root / benchmark
    forget = names_in(root, benchmark, "privleak/forget.jsonl")
    retain = names_in(root, benchmark, "privleak/retain.jsonl")
    holdout = names_in(root, benchmark, "privleak/holdout.jsonl")
    sizes = SIZES["muse"]
    assert len(set(forget)) == len(forget) == sizes["forget_entities"]
    assert len(set(retain)) == len(retain) == sizes["retain_entities"]
    assert len(set(holdout)) == len(holdout) == sizes["holdout_entities"]
    raw = {s: texts(root, f"raw/{s}.jsonl") for s in ("forget", "retain1", "retain2", "holdout")}
    trained = raw["forget"] + raw["retain1"] + raw["retain2"]
    for name in holdout:
        assert not any(mentions(t, name) for t in trained), name
        assert any(mentions(t, name) for t in raw["holdout"]), name
    for name in forget:
        assert not any(mentions(t, name) for t in raw["retain1"] + raw["retain2"]), name
        assert any(mentions(t, name) for t in raw["forget"]), name
    for name in retain:
        assert not any(mentions(t, name) for t in raw["forget"] + raw["holdout"]), name
    # retain1 and retain2 split the retain people evenly
    half = sizes["retain_entities"] // 2
    assert {n for n in retain if any(mentions(t, n) for t in raw["retain1"])} == set(retain[:half])


@pytest.mark.parametrize("benchmark", MUSE)
def test_muse_knowmem_answers_are_learnable_only_from_their_split(
    data_root: Path, benchmark: str
) -> None:
    root = data_root / benchmark
    forget_raw = texts(root, "raw/forget.jsonl")
    retain_raw = texts(root, "raw/retain1.jsonl") + texts(root, "raw/retain2.jsonl")
    forget_qa = read_jsonl(root / "knowmem/forget_qa.jsonl")
    retain_qa = read_jsonl(root / "knowmem/retain_qa.jsonl")
    for record in forget_qa:
        assert any(mentions(t, record["answer"]) for t in forget_raw), record
        assert not any(mentions(t, record["answer"]) for t in retain_raw), record
    for record in retain_qa:
        assert any(mentions(t, record["answer"]) for t in retain_raw), record
        assert not any(mentions(t, record["answer"]) for t in forget_raw), record


@pytest.mark.parametrize("benchmark", MUSE)
def test_muse_icl_examples_are_not_evaluated(data_root: Path, benchmark: str) -> None:
    root = data_root / benchmark
    evaluated = read_jsonl(root / "knowmem/forget_qa.jsonl")
    evaluated += read_jsonl(root / "knowmem/retain_qa.jsonl")
    sizes = SIZES["muse"]
    for split, entities in (("forget", "forget_entities"), ("retain", "retain_entities")):
        icl = read_jsonl(root / f"knowmem/{split}_qa_icl.jsonl")
        qa = read_jsonl(root / f"knowmem/{split}_qa.jsonl")
        assert len(icl) == sizes["icl_examples"]
        assert len(icl) + len(qa) == sizes[entities] * sizes["facts_per_entity"]
        assert not questions(icl) & questions(evaluated), split


@pytest.mark.parametrize("benchmark", MUSE)
def test_muse_verbmem_reconstructs_forget_prose(data_root: Path, benchmark: str) -> None:
    root = data_root / benchmark
    verbmem = read_jsonl(root / "verbmem/forget.jsonl")
    forget_raw = set(texts(root, "raw/forget.jsonl"))
    prose = texts(root, "privleak/forget.jsonl")
    assert sorted(r["prompt"] + r["gt"] for r in verbmem) == sorted(prose)
    for record in verbmem:
        assert record["prompt"] + record["gt"] in forget_raw
        assert len(record["prompt"].split(" ")) == SIZES["muse"]["verbmem_prompt_words"]
        assert record["gt"].startswith(" ") and not record["prompt"].endswith(" ")


# ---------------------------------------------------------------- WMDP semantics


def test_wmdp_right_values_are_in_their_topic_corpus_only(data_root: Path) -> None:
    corpora = {
        t: " ".join(texts(data_root, f"wmdp/corpora/{t}-forget-corpus.jsonl"))
        for t in layout.WMDP_TOPICS
    }
    general = " ".join(texts(data_root, "general/corpus.jsonl"))
    for topic in layout.WMDP_TOPICS:
        for record in read_jsonl(data_root / f"wmdp/questions/wmdp-{topic}.jsonl"):
            right = record["choices"][record["answer"]]
            assert mentions(corpora[topic], right), record
            assert not mentions(general, right), record
    for record in read_jsonl(data_root / "wmdp/questions/mmlu.jsonl"):
        right = record["choices"][record["answer"]]
        assert f"{record['question']} {right}." in general, record


def test_wmdp_bio_corpus_fields_and_retain_corpora(data_root: Path) -> None:
    for record in read_jsonl(data_root / "wmdp/corpora/bio-forget-corpus.jsonl"):
        assert record["text"].startswith(record["title"] + "\n")
        assert record["abstract"] in record["text"]
    general = set(texts(data_root, "general/corpus.jsonl"))
    bio = texts(data_root, "wmdp/corpora/bio-retain-corpus.jsonl")
    cyber = texts(data_root, "wmdp/corpora/cyber-retain-corpus.jsonl")
    assert len(bio) + len(cyber) == SIZES["wmdp"]["retain_documents"]
    assert set(bio) <= general and set(cyber) <= general


# ---------------------------------------------------------------- lm-eval tasks


def test_lm_eval_tasks_load_through_lm_eval(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    tasks_module = pytest.importorskip("lm_eval.tasks")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # include_defaults=False: indexing lm-eval's hundreds of built-in tasks takes ~20 s and the
    # mini tasks do not depend on them.
    manager = tasks_module.TaskManager(
        include_path=str(data_root / "wmdp" / "tasks"), include_defaults=False
    )
    names = sorted(miniature.LM_EVAL_TASKS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        task_dict = tasks_module.get_task_dict(names, manager)
    assert sorted(task_dict) == names
    for name, relative in miniature.LM_EVAL_TASKS.items():
        task = task_dict[name]
        records = read_jsonl(data_root / "wmdp" / relative)
        docs = list(task.test_docs())
        assert len(docs) == len(records), name
        assert [dict(d) for d in docs] == records, name
        first = docs[0]
        assert task.doc_to_choice(first) == records[0]["choices"]
        assert task.doc_to_target(first) == records[0]["answer"]
        assert task.doc_to_text(first) == records[0]["question"]
        assert task.OUTPUT_TYPE == "multiple_choice"


# ---------------------------------------------------------------- write_splits validation


def test_write_splits_names_the_file_and_field_missing(tmp_path: Path) -> None:
    splits = miniature.build("tofu", SEED, SIZES)
    broken = copy.deepcopy(splits)
    del broken["forget05_perturbed.jsonl"][1]["perturbed_answer"]
    with pytest.raises(ValueError, match=r"forget05_perturbed\.jsonl.*'perturbed_answer'"):
        miniature.write_splits(tmp_path, broken, "tofu")
    assert not (tmp_path / "forget05_perturbed.jsonl").exists()


def test_write_splits_rejects_missing_split_and_empty_split(tmp_path: Path) -> None:
    splits = miniature.build("tofu", SEED, SIZES)
    missing = {k: v for k, v in splits.items() if k != "retain95.jsonl"}
    with pytest.raises(ValueError, match="retain95"):
        miniature.write_splits(tmp_path, missing, "tofu")
    empty = {**splits, "full.jsonl": []}
    with pytest.raises(ValueError, match=r"full\.jsonl has no records"):
        miniature.write_splits(tmp_path, empty, "tofu")
    with pytest.raises(ValueError, match="unknown benchmark"):
        miniature.build("muse_poems", SEED, SIZES)
