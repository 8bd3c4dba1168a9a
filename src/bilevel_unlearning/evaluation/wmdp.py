"""WMDP and MMLU zero-shot accuracy through lm-eval's Python API.

Both sources run local task files that their data stage wrote into the data folder's tasks/
(evaluation never reaches the hub): the download stage writes wmdp_bio, wmdp_cyber and mmlu in
lm-eval's own format over the downloaded questions, the miniature its cloze tasks mini_*. The
lm-eval version and a hash of each task's resolved configuration are recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bilevel_unlearning.runtime import compute_device, compute_precision


def task_names(topics: Sequence[str], miniature: bool) -> list[str]:
    """lm-eval task names: one per topic, then the general-knowledge control."""
    prefix = "mini_" if miniature else ""
    return [f"{prefix}wmdp_{t}" for t in topics] + [f"{prefix}mmlu"]


def config_hash(task_config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(task_config, sort_keys=True, default=str).encode()).hexdigest()


def lm_eval_results(
    model_dir: Path,
    tasks: Sequence[str],
    tasks_dir: Path | None,
    precision: str,
    batch_size: int | str = 16,
) -> dict[str, Any]:
    """Run lm-eval zero-shot on a local HF folder; tasks_dir None uses lm-eval's own tasks."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = (
        TaskManager()
        if tasks_dir is None
        # only the local task files: indexing lm-eval's built-in tasks costs ~20 s
        else TaskManager(include_path=str(tasks_dir), include_defaults=False)
    )
    return simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype={compute_precision(precision)}",
        tasks=list(tasks),
        task_manager=manager,
        num_fewshot=0,
        batch_size=batch_size,
        device=str(compute_device()),
        log_samples=True,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )


def lm_eval_accuracy(model_dir: Path, tasks_dir: Path, tasks: Sequence[str]) -> dict[str, float]:
    """Zero-shot accuracy of each local task (the sanity probe's short form)."""
    results = lm_eval_results(model_dir, tasks, tasks_dir, "float32")
    return {task: results["results"][task]["acc,none"] for task in tasks}


def evaluate_wmdp(
    model_dir: Path,
    data: Path,
    settings: Mapping[str, Any],
    precision: str,
    miniature: bool,
) -> dict[str, Any]:
    """Accuracy per task with per-question correctness, lm-eval version and task hashes."""
    tasks = task_names(settings["topics"], miniature)
    results = lm_eval_results(model_dir, tasks, data / "tasks", precision, settings["batch_size"])
    metrics = {f"{t.removeprefix('mini_')}_acc": results["results"][t]["acc,none"] for t in tasks}
    items = {
        task: [
            {"doc_id": s["doc_id"], "correct": float(s["acc"])}
            for s in sorted(samples, key=lambda s: s["doc_id"])
        ]
        for task, samples in results["samples"].items()
    }
    return {
        "metrics": metrics,
        "items": items,
        "lm_eval": {
            "version": version("lm_eval"),
            "task_config_sha256": {t: config_hash(c) for t, c in results["configs"].items()},
        },
    }
