"""Provenance: what made each output, recorded beside it so a reviewer can tie a number to
code, config, software, hardware and inputs. One module for every stage's record."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bilevel_unlearning.io import recorded_sha256, weight_files
from bilevel_unlearning.numerics import numerics_record

CONFIG_HASH_VARIABLE = "BILEVEL_CONFIG_SHA256"  # set by the workflow for every job
PACKAGES = ("torch", "transformers", "lm_eval", "rouge_score", "scipy", "snakemake")


def git_state() -> dict[str, Any]:
    """The commit of the code that ran, and whether it had uncommitted changes."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:  # recorded as absent, not fatal
            found[name] = None
    return found


def checksums(paths: Sequence[Path], key: str = "path") -> dict[str, str]:
    """SHA-256 of each file, keyed by its path (or its name: key "name"); a model's weights
    are read from the checksums recorded when they were written (io.recorded_sha256)."""
    return {(p.name if key == "name" else str(p)): recorded_sha256(p) for p in paths}


def provenance(
    seed: int, settings: Mapping[str, Any], inputs: Sequence[Path], **extra: Any
) -> dict[str, Any]:
    """What made an output: seed, settings, input checksums, software and machine."""
    import torch
    import transformers

    return {
        "seed": seed,
        "settings": dict(settings),
        "inputs": checksums(inputs),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numerics": numerics_record(),
        **extra,
    }


def pad_token_record(model_dir: Path) -> str:
    """How an evaluation padded: the tokenizer's own pad token, or EOS where it has none
    (models.hf.with_pad_token)."""
    config = model_dir / "tokenizer_config.json"
    own = json.loads(config.read_text()).get("pad_token") if config.is_file() else None
    return "own" if own else "eos (the tokenizer has no pad token)"


def evaluation_provenance(
    model_dir: Path, data_files: list[Path], settings: Mapping[str, Any], seed: int, precision: str
) -> dict[str, Any]:
    """What an evaluation ran on: the code's commit, the config's hash, the device, the
    packages, and the SHA-256 of the weights and data files it read."""
    from bilevel_unlearning.runtime import compute_device, device_name

    return {
        "git": git_state(),
        "config_sha256": os.environ.get(CONFIG_HASH_VARIABLE),
        "settings": dict(settings),
        "seed": seed,
        "precision": precision,
        "device": device_name(compute_device()),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "packages": package_versions(),
        "python": platform.python_version(),
        "numerics": numerics_record(),
        "pad_token": pad_token_record(model_dir),
        "model": str(model_dir),
        "model_sha256": checksums(weight_files(model_dir), key="name"),
        "data_sha256": checksums(data_files),
    }


def attack_provenance(
    model_dir: Path, data_files: list[Path], settings: Mapping[str, Any], seed: int, **extra: Any
) -> dict[str, Any]:
    """What made an attacked model: the attacked weights' and data files' SHA-256, the
    attack's settings and seed."""

    record = provenance(seed, settings, data_files, **extra)
    return {
        **record,
        "attacked_model": str(model_dir),
        "attacked_sha256": checksums(weight_files(model_dir), key="name"),
    }
