"""The plan of a workflow config: one plan job per unlearning run, with its GPUs, batch
layout, sequence length and steps (forget sets counted where downloaded, else published
sizes)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.plan.architecture import resolve_architecture
from bilevel_unlearning.plan.evaluation import evaluation_counts
from bilevel_unlearning.plan.memory import estimate
from bilevel_unlearning.plan.table import plan_table
from bilevel_unlearning.runtime import batch_layout, parallel_strategy

# -- the jobs of a workflow config ---------------------------------------------------------------

# GPUs of an unlearning job when the workflow's unlearn_<benchmark> rule has no `gpus` resource
# above 0 (the default profile runs on CPUs). A DEFAULT, not a measurement: what profiles/slurm
# asks for (4 x 80 GB, FSDP, for MUSE's 7B models; one GPU for TOFU's 1B model and for WMDP's
# RMU, which trains three layers' MLPs, as the authors run it).
DEFAULT_GPUS: dict[str, int] = {"muse_news": 4, "muse_books": 4, "tofu": 1, "wmdp": 1}


def default_gpus(benchmark: str, source: str) -> int:
    """DEFAULT_GPUS for the real models; one GPU for the miniature's."""
    return DEFAULT_GPUS[benchmark] if source == "hub" else 1


# Forget-set sizes of the real benchmarks, used while their data are not downloaded yet.
REFERENCE_FORGET_ITEMS: dict[str, int] = {
    # MUSE: 2048-token chunks of the forget text (SPEC: epoch 1 at batch 4 ends at step 102 on
    # News, 139 on Books); rescaled for another max_length
    "muse_news": 4 * 102,
    "muse_books": 4 * 139,
    # TOFU: question-answer pairs of each forget split
    "forget01": 40,
    "forget05": 200,
    "forget10": 400,
    # WMDP: documents of the cyber forget corpus (cais/wmdp-corpora); the bio corpus is gated:
    # counted from wmdp.bio_forget_file when it is there, else unknown
    "cyber": 1000,
}
MUSE_REFERENCE_LENGTH = 2048
BYTES_PER_TOKEN = 4  # MUSE chunks estimated from the size of a local forget file


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def muse_forget_items(
    benchmark: str, settings: Mapping[str, Any], folder: Path | None, bio_file: Path | None
) -> list[int | None]:
    """MUSE: the forget corpus cut into max_length-token chunks (its size in bytes over
    BYTES_PER_TOKEN where downloaded)."""
    body = settings["max_length"] - 1
    forget = folder / "raw/forget.jsonl" if folder else None
    if forget is not None and forget.is_file():
        return [math.ceil(forget.stat().st_size / BYTES_PER_TOKEN / body)]
    chunks = REFERENCE_FORGET_ITEMS[benchmark] * (MUSE_REFERENCE_LENGTH - 1)
    return [math.ceil(chunks / body)]


def tofu_forget_items(
    benchmark: str, settings: Mapping[str, Any], folder: Path | None, bio_file: Path | None
) -> list[int | None]:
    """TOFU: the forget split's questions."""
    split = settings["forget_split"]
    local = folder / f"{split}.jsonl" if folder else None
    return [_lines(local) if local and local.is_file() else REFERENCE_FORGET_ITEMS[split]]


def topic_forget_items(
    benchmark: str, settings: Mapping[str, Any], folder: Path | None, bio_file: Path | None
) -> list[int | None]:
    """WMDP: each topic's forget-corpus documents (bio: the gated file where given)."""
    items: list[int | None] = []
    for topic in settings["topics"]:
        candidates = [folder / f"corpora/{topic}-forget-corpus.jsonl"] if folder else []
        candidates += [bio_file] if topic == "bio" and bio_file is not None else []
        found = next((c for c in candidates if c.is_file()), None)
        items.append(_lines(found) if found else REFERENCE_FORGET_ITEMS.get(topic))
    return items


FORGET_COUNTERS = {"muse": muse_forget_items, "tofu": tofu_forget_items, "wmdp": topic_forget_items}


def forget_items(
    benchmark: str, settings: Mapping[str, Any], data: Path | None, bio_file: Path | None = None
) -> list[int | None]:
    """Forget examples of one run per topic (one topic except on WMDP): counted in the data
    folder when it exists, else REFERENCE_FORGET_ITEMS; None where neither knows."""
    folder = data if data is not None and data.is_dir() else None
    return FORGET_COUNTERS[bench(benchmark).family](benchmark, settings, folder, bio_file)


def run_steps(items: Sequence[int | None], settings: Mapping[str, Any], gpus: int) -> int | None:
    """Optimizer steps of a run, batched as the unlearning loop batches: `batch_size` examples
    per step over all processes (so independent of `gpus`), each topic batched alone, capped at
    `max_steps_per_epoch`."""
    cap = settings.get("max_steps_per_epoch")
    steps = sum(math.ceil(int(i) / settings["batch_size"]) for i in items if i is not None)
    if cap is not None and steps >= cap:  # known already, even if a forget set is not
        return settings["epochs"] * cap
    if any(i is None for i in items):
        return None
    return settings["epochs"] * (steps if cap is None else min(steps, cap))


def is_source(data: Path, source: str) -> bool:
    """Whether a data folder holds `source`'s files: a hub download leaves provenance.json."""
    downloaded = (data / "provenance.json").is_file()
    return downloaded if source == "hub" else not downloaded


def start_model(config: Mapping[str, Any], benchmark: str) -> str | dict[str, Any]:
    """What a benchmark's unlearning starts from: its hub id (source hub; the base model's id
    for a built one, same architecture), or the miniature's architecture."""
    from bilevel_unlearning.runs import START_ROLE, family

    if config["source"] == "hub":
        entry = config["hub"][benchmark]["models"][START_ROLE[family(benchmark)]]
        return entry.get("repo") or entry["build_from"]
    models = config["models"]
    return {**models["architecture"], "vocab_size": models["tokenizer"]["vocab_size"]}


def sequence_length(benchmark: str, settings: Mapping[str, Any]) -> int:
    """Tokens per sequence: the longest of a run's forget and retain sequences."""
    lengths = [settings["max_length"]]
    if bench(benchmark).topics:
        lengths += [settings["forget_lengths"][t] for t in settings["topics"]]
    return max(lengths)


def config_jobs(
    config: Mapping[str, Any],
    gpus: Mapping[str, int],
    data_root: Path | None = None,
    bio_file: Path | None = None,
) -> list[dict[str, Any]]:
    """One plan job per unlearning run of the config (bilevel_unlearning.runs.unlearn_runs);
    `gpus`: GPUs per benchmark; `data_root`: the results folder, to count forget sets."""
    return [
        job
        for benchmark in config["benchmarks"]
        for job in benchmark_jobs(config, benchmark, int(gpus[benchmark]), data_root, bio_file)
    ]


def benchmark_jobs(
    config: Mapping[str, Any],
    benchmark: str,
    count: int,
    data_root: Path | None = None,
    bio_file: Path | None = None,
) -> list[dict[str, Any]]:
    """The plan jobs of one benchmark's unlearning runs on `count` GPUs each."""
    from bilevel_unlearning.runs import unlearn_runs

    model = start_model(config, benchmark)
    strategy = parallel_strategy(count, resolve_architecture(model).params())
    strategy = "ddp" if strategy == "single" else strategy  # one GPU: nothing sharded
    data = data_root / benchmark / "data" if data_root is not None else None
    if data is not None and not is_source(data, config["source"]):
        data = None  # e.g. the miniature's files where the hub data will go
    jobs = []
    for name, run in unlearn_runs(config, benchmark).items():
        settings = run.settings
        items = forget_items(benchmark, settings, data, bio_file)
        jobs.append(
            {
                "name": f"{benchmark}/{name}",
                "model": model,
                "precision": config["precision"],
                "gpus": count,
                "strategy": strategy,
                "batch": settings["batch_size"],
                "micro_batch": batch_layout(
                    settings["batch_size"], count, settings.get("micro_batch_size")
                ).micro_batch,
                "seq_len": sequence_length(benchmark, settings),
                "gradient_checkpointing": bool(settings.get("gradient_checkpointing", False)),
                "epochs": settings["epochs"],
                "state_every": settings.get("state_every", 1),
                "steps": run_steps(items, settings, count),
                "method": dict(run.params),
            }
        )
    return jobs


# sbatch -t of an unlearning job: the plan's runtime x TIME_MARGIN + TIME_FLOOR_MIN minutes (the
# plan's MFU and I/O rates are estimates), times the attempt; UNKNOWN_TIME_MIN while the forget
# set's size is unknown (the gated bio corpus not yet in place).
TIME_MARGIN = 3.0
TIME_FLOOR_MIN = 30
UNKNOWN_TIME_MIN = 480


def time_limits(
    config: Mapping[str, Any], benchmark: str, gpus: int, data_root: Path | None = None
) -> dict[str, int]:
    """Run -> time limit in minutes at the first attempt of each unlearning job of a benchmark,
    from the plan (a requeued or retried job resumes from its last training state, so a limit
    that proves short costs one more attempt)."""
    bio = config["wmdp"].get("bio_forget_file")
    limits = {}
    for job in benchmark_jobs(config, benchmark, gpus, data_root, Path(bio) if bio else None):
        run = job["name"].split("/", 1)[1]
        if job["steps"] is None:
            limits[run] = UNKNOWN_TIME_MIN
        else:
            limits[run] = math.ceil(estimate(job).seconds / 60 * TIME_MARGIN + TIME_FLOOR_MIN)
    return limits


def time_limit_minutes(
    config: Mapping[str, Any],
    benchmark: str,
    run: str,
    gpus: int,
    attempt: int = 1,
    data_root: Path | None = None,
) -> int:
    """The time limit of one unlearning job at an attempt (time_limits x attempt)."""
    return time_limits(config, benchmark, gpus, data_root)[run] * attempt


def config_plan(config: Mapping[str, Any], gpus: Mapping[str, tuple[int, str]]) -> str:
    """The GPU plan of a config's unlearning runs (`snakemake plan`): gpus maps a benchmark to
    (GPUs per run, where that number comes from); forget sets are counted in the results
    folder where downloaded, else taken from published sizes."""
    notes = [f"{b}: {n} GPU(s) per run, from {origin}." for b, (n, origin) in gpus.items()]
    bio = config["wmdp"].get("bio_forget_file")
    results = config["results_dir"]
    per_benchmark = {b: n for b, (n, _) in gpus.items()}
    jobs = config_jobs(config, per_benchmark, Path(results), Path(bio) if bio else None)
    if any(job["steps"] is None for job in jobs):
        notes.append(
            "runtime ?: the size of a forget set is unknown until it is downloaded (the "
            "gated WMDP bio corpus: until it is at wmdp.bio_forget_file)."
        )
    notes.append(
        "steps per run: the forget set batched as the unlearning loop does, counted in "
        f"{results}/<benchmark>/data where present, else published sizes (plan/workload.py)."
    )
    counts = evaluation_counts(config) if config["source"] == "hub" else ()
    return plan_table(jobs, notes, counts)
