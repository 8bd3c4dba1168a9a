"""A model built from a hub base (`build_from`) is fine-tuned through the workflow's launcher:
`accelerate launch` with 2 CPU processes (gloo), the toy Llama-2-shaped base sharded (FSDP2) or
replicated (DDP), each process on its half of every batch, as finetune_model runs a 7B base on
4 GPUs.

Every example is cut to max_length, so every packed chunk is full and the mean of the two
halves' token means is the batch's: FSDP over 2 processes then reaches the weights of one
process to float32 rounding (the same sums reduced in another order)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file

from bilevel_unlearning.data.rehearsal_models import write_model_repo
from bilevel_unlearning.io import write_jsonl
from bilevel_unlearning.runtime import launch_command

pytestmark = pytest.mark.workflow  # several processes: not in `make test-fast`

SETTINGS = {
    "epochs": 2,
    "learning_rate": 1e-3,
    "batch_size": 4,
    "max_length": 16,
    "replay_general": 0.0,
    "gradient_checkpointing": True,
}
WORDS = ["the", "author", "wrote", "a", "long", "book", "about", "rivers", "and", "cities"]


def long_text(seed: int) -> str:
    """Far more than max_length tokens: every example is cut to exactly max_length."""
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(60))


@pytest.fixture(scope="module")
def base_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("finetune_launcher")
    base = write_model_repo(root / "hub", "meta-llama/Llama-2-7b-hf", [long_text(0)] * 20, 0)
    data = root / "data"
    # MUSE's target is fine-tuned on its forget corpus and both retain corpora: 8 documents
    for name, seeds in (("forget", (0, 1, 2)), ("retain1", (3, 4, 5)), ("retain2", (6, 7))):
        write_jsonl(data / "raw" / f"{name}.jsonl", [{"text": long_text(s)} for s in seeds])
    return base, data


def finetune(base: Path, data: Path, out: Path, processes: int, strategy: str, precision: str):
    launcher = launch_command(processes, str(REPO / "envs" / "accelerate.yaml"))
    command = (
        f"{launcher} bilevel_unlearning.cli finetune --benchmark muse_news --role target"
        f" --base {base} --data {data} --settings '{json.dumps(SETTINGS)}' --seed 0"
        f" --precision {precision} --strategy {strategy} --out {out}"
    )
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # accelerate
    env = {**os.environ, "PATH": path}
    done = subprocess.run(command, shell=True, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return load_file(out / "model.safetensors"), json.loads((out / "provenance.json").read_text())


@pytest.fixture(scope="module")
def one_process(base_and_data: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    base, data = base_and_data
    return finetune(base, data, tmp_path_factory.mktemp("single") / "model", 1, "single", "float32")


def start_weights(base: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(base.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.mark.parametrize("strategy", ["fsdp", "ddp"])
def test_a_built_model_trains_over_the_launchers_processes_as_on_one(
    base_and_data: tuple[Path, Path], one_process, tmp_path: Path, strategy: str
) -> None:
    base, data = base_and_data
    one, one_record = one_process
    two, two_record = finetune(base, data, tmp_path / strategy, 2, strategy, "float32")
    assert one.keys() == two.keys()
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-5, atol=5e-6)
    start = start_weights(base)
    assert any(not torch.equal(one[k], start[k]) for k in one), "nothing moved"
    assert (two_record["strategy"], two_record["processes"]) == (strategy, 2)
    assert (one_record["strategy"], one_record["processes"]) == ("single", 1)
    # 8 documents of 16 tokens, batch 4: 2 updates per epoch; the logged loss is the whole
    # batch's (the mean of the processes' halves), as on one process
    assert two_record["epoch_losses"] == pytest.approx(one_record["epoch_losses"], rel=1e-5)


def test_mixed_precision_fsdp_publishes_bf16_and_follows_the_fp32_losses(
    base_and_data: tuple[Path, Path], one_process, tmp_path: Path
) -> None:
    base, data = base_and_data
    _, one_record = one_process
    mixed, record = finetune(base, data, tmp_path / "mixed", 2, "fsdp", "mixed")
    assert {v.dtype for v in mixed.values()} == {torch.bfloat16}
    assert (record["strategy"], record["processes"], record["precision"]) == ("fsdp", 2, "mixed")
    start = start_weights(base)
    assert any(not torch.equal(mixed[k].float(), start[k].bfloat16().float()) for k in mixed)
    # bf16 compute (FSDP's policy) over fp32 shards: the fp32 run's losses to bf16 rounding
    assert record["epoch_losses"] == pytest.approx(one_record["epoch_losses"], rel=1e-2)
