"""Another CPU, simulated: a real pretraining job (the CLI, as the workflow runs it) under the
environment a CPU with fewer vector units gives torch and MKL. Without the pins the job's
weights change bits; with them, they are equal to this machine's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bilevel_unlearning.io import sha256_file
from bilevel_unlearning.numerics import NATIVE_VARIABLE, pins_apply

pytestmark = pytest.mark.workflow

# what dispatch picks on an old x86 CPU: ATen's baseline kernels, MKL's SSE4.2 and oneDNN's
# SSE4.1 code (different from this machine's AVX2 or AVX-512 paths on any current CPU)
OLDER_CPU = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
}
SETTINGS = {
    "epochs": 2,
    "learning_rate": 3e-3,
    "batch_size": 8,
    "max_length": 64,
    "architecture": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 128,
    },
}


def cli(*args: str, env: dict[str, str] | None = None) -> None:
    command = [sys.executable, "-m", "bilevel_unlearning.cli", *args]
    clean = {k: v for k, v in os.environ.items() if k not in (*OLDER_CPU, NATIVE_VARIABLE)}
    done = subprocess.run(command, capture_output=True, text=True, env={**clean, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def tokenizer_dir(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pins") / "tokenizer"
    corpus = str(data_root / "general" / "corpus.jsonl")
    cli(
        "train-tokenizer",
        "--texts",
        corpus,
        "--vocab-size",
        "512",
        "--seed",
        "0",
        "--out",
        str(out),
    )
    return out


def pretrain(tokenizer_dir: Path, data_root: Path, out: Path, env: dict[str, str]) -> str:
    """The job's weights' SHA-256, and its recorded CPU kernel path."""
    cli(
        "pretrain", "--tokenizer", str(tokenizer_dir),
        "--corpus", str(data_root / "general" / "corpus.jsonl"),
        "--settings", json.dumps(SETTINGS), "--seed", "0", "--threads", "1", "--out", str(out),
        env=env,
    )  # fmt: skip
    numerics = json.loads((out / "provenance.json").read_text())["numerics"]
    return sha256_file(out / "model.safetensors"), numerics["cpu_capability"]


@pytest.mark.skipif(not pins_apply(), reason="the pins apply to x86-64 CPUs with AVX2 only")
def test_pins_give_this_machines_bits_on_another_cpu(
    tokenizer_dir: Path, data_root: Path, tmp_path: Path
) -> None:
    native = {NATIVE_VARIABLE: "1"}
    here, _ = pretrain(tokenizer_dir, data_root, tmp_path / "native_here", native)
    there, path = pretrain(
        tokenizer_dir, data_root, tmp_path / "native_there", {**native, **OLDER_CPU}
    )
    assert path == "DEFAULT"
    assert here != there, "the simulated CPU did not change the kernels: the test shows nothing"

    pinned_here, path_here = pretrain(tokenizer_dir, data_root, tmp_path / "pinned_here", {})
    pinned_there, path_there = pretrain(
        tokenizer_dir, data_root, tmp_path / "pinned_there", OLDER_CPU
    )
    assert path_here == path_there == "AVX2"
    assert pinned_here == pinned_there
