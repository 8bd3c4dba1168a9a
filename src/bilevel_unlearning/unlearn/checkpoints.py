"""A run's checkpoints on disk: where each epoch is saved as training goes and published when
the run ends, the fingerprint that decides whether one is resumed, and which training states
are kept (the loop in loop.py writes and reads them)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bilevel_unlearning.io import atomic_path
from bilevel_unlearning.unlearn import sharding

STATE_FILE = "trainer_state.pt"
FINGERPRINT_FILE = "fingerprint.json"
CHECKPOINTS = "checkpoints"
LOG_FILE = "train_log.jsonl"
# Raised whenever the loop's arithmetic changes, so checkpoints of an older loop are not
# resumed (2: the config's batch is global, micro-batches weighted by their share).
LOOP_VERSION = 2


def epoch_folder(out: Path, epoch: int) -> Path:
    """Where an epoch's model is published once the whole run has finished."""
    return out / f"epoch_{epoch}"


def checkpoint_folder(out: Path, epoch: int) -> Path:
    """Where an epoch is saved as training goes, with its trainer state.

    Not a declared output of the workflow: Snakemake deletes a failed or requeued job's
    outputs before it reruns the job, so checkpoints there could never be resumed from.
    """
    return out / CHECKPOINTS / f"epoch_{epoch}"


def fingerprint_digest(fingerprint: Mapping[str, Any]) -> str:
    """SHA-256 of what determines a run (sorted JSON, so key order does not matter)."""
    text = json.dumps({**fingerprint, "loop_version": LOOP_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if json.dumps(old.get(k), sort_keys=True, default=str)
            != json.dumps(new.get(k), sort_keys=True, default=str)]  # fmt: skip


def last_complete_epoch(out: Path, epochs: int) -> int:
    """The latest epoch whose checkpoint holds a training state (folders are written
    atomically; only the last keeps its training state, see prune_training_states)."""
    done = [e for e in range(1, epochs + 1) if (checkpoint_folder(out, e) / STATE_FILE).is_file()]
    return max(done, default=0)


def prune_training_states(out: Path, keep: int) -> None:
    """Delete the optimizer and trainer state of every epoch before `keep`: only the last is
    resumed from, and for a 7B model each is ~40 GB. The weights stay (they are published)."""
    for epoch in range(1, keep):
        folder = checkpoint_folder(out, epoch)
        (folder / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(folder / sharding.TRAINING_STATE, ignore_errors=True)


TRAINING_FILES = (STATE_FILE, FINGERPRINT_FILE, sharding.TRAINING_STATE)


def publish(out: Path, epochs: int) -> None:
    """Hard-link every checkpoint's Hugging Face files (not its training state) and the step
    log into the run's published outputs.

    Links cost no disk space; each published folder appears complete or not at all.
    """
    for epoch in range(1, epochs + 1):
        with atomic_path(epoch_folder(out, epoch)) as tmp:
            shutil.copytree(
                checkpoint_folder(out, epoch),
                tmp,
                copy_function=os.link,
                ignore=shutil.ignore_patterns(*TRAINING_FILES),
            )
    with atomic_path(out / LOG_FILE) as tmp:
        shutil.copyfile(out / CHECKPOINTS / LOG_FILE, tmp)
