"""WMDP evaluation without the hub: the download stage writes lm-eval task files over the
downloaded questions, in the format of lm-eval's own wmdp_bio, wmdp_cyber and mmlu tasks.

The task files are compared request by request with lm-eval's own task definitions (loaded from
the installed lm-eval, their dataset pointed at the same local file), and run by the real
lm-eval on a tiny random model through the evaluation code the workflow calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bilevel_unlearning.data import hub, hub_sources, lm_eval_tasks
from bilevel_unlearning.io import read_json

lm_eval = pytest.importorskip("lm_eval")

SUBJECTS = ["abstract_algebra", "anatomy", "high_school_us_history", "astronomy"]


def question(topic: str, i: int, **extra: Any) -> dict[str, Any]:
    """A 4-choice question with the hub's fields (spaces around the stem, as some have)."""
    choices = [f"{topic} option {k} of {i}" for k in range(4)]
    return {
        "question": f" What is {topic} fact {i}? ",
        "choices": choices,
        "answer": i % 4,
        **extra,
    }


def write_rows(root: Path, repo: str, config: str, split: str, rows: list[dict]) -> None:
    folder = root / repo / config / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def wmdp_mirror(root: Path) -> Path:
    """cais/wmdp, cais/wmdp-corpora (cyber), cais/mmlu and wikitext, hub-shaped, a few rows."""
    for topic in ("bio", "cyber"):
        write_rows(
            root, "cais/wmdp", f"wmdp-{topic}", "test", [question(topic, i) for i in range(6)]
        )
        retain = [{"text": f"{topic} retain text {i}"} for i in range(2)]
        write_rows(root, "cais/wmdp-corpora", f"{topic}-retain-corpus", "train", retain)
    forget = [{"text": f"cyber forget text {i}"} for i in range(2)]
    write_rows(root, "cais/wmdp-corpora", "cyber-forget-corpus", "train", forget)
    mmlu = [question("mmlu", i, subject=SUBJECTS[i % len(SUBJECTS)]) for i in range(8)]
    write_rows(root, "cais/mmlu", "all", "test", mmlu)
    write_rows(root, "Salesforce/wikitext", "wikitext-2-raw-v1", "test", [{"text": " A line . \n"}])
    return root


def bio_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / hub.BIO_FORGET_FILE
    path.write_text(json.dumps({"title": "T", "abstract": "A.", "text": "Body."}) + "\n")
    return path


@pytest.fixture(scope="module")
def wmdp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WMDP data folder written by the download stage (from a local mirror), both topics."""
    root = tmp_path_factory.mktemp("hub_wmdp")
    out = root / "data"
    hub.download_benchmark(
        "wmdp",
        out,
        bio_forget_file=bio_file(root / "gated"),
        source=hub_sources.MirrorSource(wmdp_mirror(root / "mirror")),
    )
    return out


def test_download_writes_one_task_file_per_topic_and_mmlu(wmdp_data: Path) -> None:
    tasks = sorted(p.name for p in (wmdp_data / "tasks").iterdir())
    assert tasks == ["mmlu.yaml", "wmdp_bio.yaml", "wmdp_cyber.yaml"]
    provenance = read_json(wmdp_data / "provenance.json")
    assert sorted(provenance["lm_eval_tasks"]) == [f"tasks/{t}" for t in tasks]
    assert "tasks/wmdp_bio.yaml" in hub.hub_data_files("wmdp")


def test_task_files_read_the_downloaded_questions_by_absolute_path(wmdp_data: Path) -> None:
    for task, questions in lm_eval_tasks.lm_eval_tasks().items():
        config = yaml.safe_load((wmdp_data / "tasks" / f"{task}.yaml").read_text())
        assert config == lm_eval_tasks.letter_task_config(task, wmdp_data / questions)
        path = Path(config["dataset_kwargs"]["data_files"]["test"])
        assert path.is_absolute() and path == (wmdp_data / questions).resolve()
        assert "cais/" not in json.dumps(config)  # nothing that lm-eval would fetch


def test_without_bio_only_the_cyber_and_mmlu_tasks_exist(tmp_path: Path) -> None:
    source = hub_sources.MirrorSource(wmdp_mirror(tmp_path / "mirror"))
    hub.download_benchmark("wmdp", tmp_path / "data", topics=["cyber"], source=source)
    tasks = sorted(p.name for p in (tmp_path / "data" / "tasks").iterdir())
    assert tasks == ["mmlu.yaml", "wmdp_cyber.yaml"]
    assert lm_eval_tasks.task_files(["cyber"]) == ["tasks/wmdp_cyber.yaml", "tasks/mmlu.yaml"]


def requests(config: dict[str, Any]) -> list[tuple]:
    """What lm-eval scores for each question: the prompt, the choices, the target, the
    delimiter between prompt and choice."""
    from lm_eval.api.task import ConfigurableTask

    task = ConfigurableTask(config=config)
    return [
        (
            task.fewshot_context(doc, 0),
            task.doc_to_choice(doc),
            task.doc_to_target(doc),
            task.config.target_delimiter,
        )
        for doc in task.test_docs()
    ]


def lm_eval_own(path: str, data_file: Path) -> dict[str, Any]:
    """lm-eval's own task definition (includes resolved), reading data_file instead of the hub."""
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(Path(lm_eval.__file__).parent / "tasks" / path)
    for key in ("dataset_name", "fewshot_split", "fewshot_config", "validation_split"):
        config.pop(key, None)
    config.update(dataset_path="json", dataset_kwargs={"data_files": {"test": str(data_file)}})
    return config


def ours(wmdp_data: Path, task: str) -> list[tuple]:
    from lm_eval.tasks._yaml_loader import load_yaml

    return requests(load_yaml(wmdp_data / "tasks" / f"{task}.yaml"))


@pytest.mark.parametrize("topic", ["bio", "cyber"])
def test_wmdp_tasks_ask_exactly_what_lm_evals_own_tasks_ask(wmdp_data: Path, topic: str) -> None:
    own = requests(
        lm_eval_own(f"wmdp/wmdp_{topic}.yaml", wmdp_data / f"questions/wmdp-{topic}.jsonl")
    )
    assert ours(wmdp_data, f"wmdp_{topic}") == own
    prompt, choices, target, delimiter = own[1]
    about = lm_eval_tasks.WMDP_TOPIC_NAMES[topic]
    stem = f"What is {topic} fact 1?"
    options = "".join(f"\n{letter}. {topic} option {k} of 1" for k, letter in enumerate("ABCD"))
    header = f"The following are multiple choice questions (with answers) about {about}.\n\n"
    assert prompt == f"{header}{stem}{options}\nAnswer:"
    assert (choices, target, delimiter) == (["A", "B", "C", "D"], 1, " ")  # scored on " A".." D"


def test_one_mmlu_task_asks_each_question_as_its_subjects_own_task(wmdp_data: Path) -> None:
    """Question i of the single mmlu task equals question i of lm-eval's mmlu_<subject>."""
    mine = ours(wmdp_data, "mmlu")
    records = [json.loads(line) for line in (wmdp_data / "questions/mmlu.jsonl").open()]
    assert len(mine) == len(records) == 8
    for subject in SUBJECTS:
        own = requests(
            lm_eval_own(f"mmlu/default/mmlu_{subject}.yaml", wmdp_data / "questions/mmlu.jsonl")
        )
        indices = [i for i, r in enumerate(records) if r["subject"] == subject]
        assert indices and all(mine[i] == own[i] for i in indices)
        assert subject.replace("_", " ") + ".\n\n" in mine[indices[0]][0]


def test_evaluation_runs_the_local_tasks_with_lm_eval(
    wmdp_data: Path, tiny_model: Any, tokenizer: Any, tmp_path: Path
) -> None:
    """evaluate_wmdp (what the evaluate rule calls under source hub) on a tiny random model:
    the metric keys of the result JSON, per-question items, and MMLU as the mean over all
    questions (the micro average lm-eval's mmlu group reports, weight_by_size)."""
    from bilevel_unlearning.evaluation.wmdp import evaluate_wmdp
    from bilevel_unlearning.models.hf import save_model

    model_dir = tmp_path / "model"
    save_model(tiny_model, tokenizer, model_dir, {"test": "tiny random model"})
    settings = {"topics": ["bio", "cyber"], "batch_size": 8}
    result = evaluate_wmdp(model_dir, wmdp_data, settings, "float32", miniature=False)
    assert set(result["metrics"]) == {"wmdp_bio_acc", "wmdp_cyber_acc", "mmlu_acc"}
    assert set(result["items"]) == {"wmdp_bio", "wmdp_cyber", "mmlu"}
    assert [len(result["items"][t]) for t in ("wmdp_bio", "wmdp_cyber", "mmlu")] == [6, 6, 8]
    for task, items in result["items"].items():
        mean = sum(item["correct"] for item in items) / len(items)
        assert result["metrics"][f"{task}_acc"] == pytest.approx(mean)
    assert set(result["lm_eval"]["task_config_sha256"]) == {"wmdp_bio", "wmdp_cyber", "mmlu"}
