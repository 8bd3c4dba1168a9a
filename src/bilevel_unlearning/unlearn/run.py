"""The unlearn step: one method on one benchmark, from the target model to epoch checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bilevel_unlearning import methods
from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.models.encoding import ChatFormat
from bilevel_unlearning.models.hf import (
    load_tokenizer,
    weight_files,
    write_model_folder,
)
from bilevel_unlearning.models.train import train_causal_lm
from bilevel_unlearning.placement import place_for_training, start_models
from bilevel_unlearning.provenance import provenance
from bilevel_unlearning.runtime import (
    MIXED_COMPUTE,
    compute_device,
)
from bilevel_unlearning.unlearn.data import UnlearnData, muse_data, tofu_data, wmdp_data
from bilevel_unlearning.unlearn.loop import LoopSettings, Unlearner
from bilevel_unlearning.unlearn.objectives import Objective

log = logging.getLogger(__name__)


def muse_batches(tokenizer: Any, data_dir: Path, settings: Mapping) -> UnlearnData:
    return muse_data(
        tokenizer, data_dir, settings["max_length"], settings.get("corpus_form", "authors")
    )


def tofu_batches(tokenizer: Any, data_dir: Path, settings: Mapping) -> UnlearnData:
    split, chat = settings["forget_split"], ChatFormat.from_settings(settings)
    return tofu_data(
        tokenizer, data_dir, split, settings["retain_split"], settings["max_length"], chat
    )


def wmdp_batches(tokenizer: Any, data_dir: Path, settings: Mapping) -> UnlearnData:
    topics = settings["topics"]
    lengths = {topic: settings["forget_lengths"][topic] for topic in topics}
    form = settings.get("corpus_form", "authors")
    return wmdp_data(tokenizer, data_dir, topics, lengths, settings["max_length"], form)


UNLEARN_DATA = {"muse": muse_batches, "tofu": tofu_batches, "wmdp": wmdp_batches}


def benchmark_data(
    benchmark: str, tokenizer: Any, data_dir: Path, settings: Mapping
) -> UnlearnData:
    """The forget/retain examples of a benchmark, batched as the paper's code batches them."""
    return UNLEARN_DATA[bench(benchmark).family](tokenizer, data_dir, settings)


def reinforced_model(
    model: torch.nn.Module,
    data: UnlearnData,
    method: Mapping[str, Any],
    settings: Mapping[str, Any],
    seed: int,
    strategy: str = "single",
    precision: str = "float32",
) -> torch.nn.Module:
    """WHP's reinforced model: `model`, a copy of the target (start_models), fine-tuned further
    on the forget set in place, on the device the job computes on, placed as the job places its
    model (placement.py): under FSDP sharded with the job's mixed-precision policy, the
    processes splitting each batch, so a 7B copy trains within its GPUs; one process: the
    whole batch, autocast under mixed."""
    placed = place_for_training(model, strategy, precision, compute_device())
    with placed.compute():
        train_causal_lm(
            placed.trained,
            [example for topic in data.forget for example in topic],
            pad_id=data.pad_id,
            epochs=int(method["reinforce_epochs"]),
            learning_rate=settings["learning_rate"],
            batch_size=settings.get("micro_batch_size") or settings["batch_size"],
            seed=seed,
            log=log.info,
            rank=placed.rank,
            world=placed.world,
        )
    return placed.model


# Loop settings a method may set for itself, overriding its benchmark's (the MUSE baselines'
# learning rate and clipping, Task Vector's cosine schedule).
METHOD_OVERRIDES = ("learning_rate", "clip_norm", "schedule")


def loop_settings(
    method: Mapping[str, Any], settings: Mapping[str, Any], seed: int, precision: str = "float32"
) -> LoopSettings:
    """The loop's settings: the benchmark's, with the method's own overrides."""
    merged = {**settings, **{k: method[k] for k in METHOD_OVERRIDES if k in method}}
    mixed = MIXED_COMPUTE if precision == "mixed" else None
    return LoopSettings(
        autocast_dtype=mixed,
        publish_dtype=mixed,
        epochs=merged["epochs"],
        learning_rate=merged["learning_rate"],
        batch_size=merged["batch_size"],
        micro_batch_size=merged.get("micro_batch_size"),
        max_steps_per_epoch=merged.get("max_steps_per_epoch"),
        schedule=merged.get("schedule", "constant"),
        warmup_steps=merged.get("warmup_steps", 0),
        warmup_epochs=merged.get("warmup_epochs"),
        weight_decay=merged.get("weight_decay", 0.0),
        clip_norm=merged.get("clip_norm"),
        seed=seed,
        state_every=merged.get("state_every", 1),
    )


# the modules whose change changes what an unlearning run computes (relative to the package)
TRAINING_CODE = ("unlearn", "models/encoding.py", "models/hf.py", "runtime.py", "methods.py")


def training_code_digest(root: Path | None = None) -> str:
    """SHA-256 over the training path's source files, in a fixed order: part of a run's
    checkpoint fingerprint, so a resumed run never continues a checkpoint of other code."""
    import hashlib

    import bilevel_unlearning

    root = Path(bilevel_unlearning.__file__).parent if root is None else root
    digest = hashlib.sha256()
    for part in TRAINING_CODE:
        files = sorted((root / part).rglob("*.py")) if (root / part).is_dir() else [root / part]
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def unlearn_step(
    *,
    benchmark: str,
    method: Mapping[str, Any],
    model_dir: Path,
    data_dir: Path,
    out: Path,
    settings: Mapping[str, Any],
    seed: int,
    precision: str = "float32",
    strategy: str = "single",
) -> None:
    """Unlearn with `method`, writing out/epoch_{k}/ (HF folders) and out/train_log.jsonl."""
    from accelerate import Accelerator

    seed = int(settings.get("seed", seed))  # the benchmark's unlearning seed (paper: 42 on MUSE)
    torch.manual_seed(seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    device = compute_device(accelerator)
    tokenizer = load_tokenizer(model_dir)
    start = start_models(
        model_dir,
        precision,
        strategy,
        device,
        reference=methods.needs_reference(method),
        reinforced=methods.FORGET_LOSSES[method["forget_loss"]].reinforced,
        checkpointing=bool(settings.get("gradient_checkpointing")),
    )
    model, reference = start.model, start.reference
    data = benchmark_data(benchmark, tokenizer, data_dir, settings)
    reinforced = (
        reinforced_model(start.reinforced, data, method, settings, seed, strategy, precision)
        if start.reinforced is not None
        else None
    )
    objective = Objective({**method, "seed": seed}, reference, reinforced)
    loop = loop_settings(method, settings, seed, precision)
    inputs = [*weight_files(model_dir), *sorted(data_dir.rglob("*.jsonl"))]
    record = provenance(seed, {"method": dict(method), **settings}, inputs, benchmark=benchmark)

    def save(model: torch.nn.Module, folder: Path, state_dict: Any = None) -> None:
        write_model_folder(model, tokenizer, folder, record, state_dict)

    fingerprint = {
        "method": dict(method),
        "settings": dict(settings),
        "seed": seed,
        "precision": precision,
        "inputs": record["inputs"],  # SHA-256 of the start model's weights and the data files
        # the code of the training path and the kernels it ran on: a checkpoint made by other
        # code (a changed loss) or other CPU kernels is not resumed
        "code": training_code_digest(),
        "kernels": record["numerics"]["environment"],
    }
    Unlearner(
        model,
        objective,
        data,
        loop,
        out,
        accelerator=accelerator,
        fingerprint=fingerprint,
        device=device,
        sharded=strategy == "fsdp",
        save_model=save,
    ).run()
