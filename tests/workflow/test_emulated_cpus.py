"""Other CPUs, emulated: the real workflow's jobs rerun as an Intel and an AMD CPU model would
run them (QEMU's user-mode emulator, `qemu-x86_64 -cpu MODEL`), and give this machine's bits.

The micro config (tests/config/emulated.yaml) runs natively first; then, in a copy of the
folder per CPU model, Snakemake reruns four jobs with BILEVEL_CPU_EMULATOR set, so each
computing job re-executes itself under the emulator (numerics.run_under_emulator): the MUSE
target's fine-tuning epoch, a BLUR unlearning run from it, that run's MUSE evaluation, and a
TOFU evaluation. Their weights must be equal bit for bit, their step logs and result JSONs
equal but for timings and the recorded emulator. Without the CPU-independent kernels
(fused AdamW, the correctly rounded square root, numpy's pinned dispatch) they differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from workflow_helpers import snakemake_command

from bilevel_unlearning.io import sha256_file
from bilevel_unlearning.numerics import EMULATOR_VARIABLE, NATIVE_VARIABLE, pins_apply

pytestmark = pytest.mark.workflow

CONFIGS = (REPO / "tests/config/tiny.yaml", REPO / "tests/config/emulated.yaml")
# one Intel and one AMD model; both AVX2, no AVX-512 (QEMU emulates none), so the pinned AVX2
# paths run on each while this machine may have AVX-512
CPU_MODELS = ("Haswell", "EPYC-Milan")
MUSE_TARGET = "results/muse_news/models/target"
BLUR_RUN = "results/muse_news/unlearn/blur_npo"
RERUN = (  # forced in the emulated copies; each job downstream of one reruns too
    MUSE_TARGET,
    "results/tofu/eval/retain-forget10/none/epoch_0.json",
)
TARGETS = (
    "results/muse_news/eval/blur_npo/none/epoch_1.json",
    "results/tofu/eval/retain-forget10/none/epoch_0.json",
)
EMULATED_RESULTS = TARGETS
WEIGHTS = (f"{MUSE_TARGET}/model.safetensors", f"{BLUR_RUN}/epoch_1/model.safetensors")
TIMING_KEYS = {"tokens_per_s", "seconds", "elapsed_s", "duration_s", "wall_s", "time"}


def emulator() -> str:
    found = shutil.which("qemu-x86_64")
    if found is None:  # a failure, not a skip: CI must run this test
        pytest.fail("qemu-x86_64 is missing: `make setup` installs it (apt-get install qemu-user)")
    return found


def run(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    command = snakemake_command(workdir, *TARGETS, *args, configfiles=CONFIGS, cores=1)
    clean = {k: v for k, v in os.environ.items() if k not in (EMULATOR_VARIABLE, NATIVE_VARIABLE)}
    log = (workdir / "snakemake.log").open("w")
    return subprocess.Popen(
        command, cwd=workdir, env={**clean, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
    )


def finish(process: subprocess.Popen, workdir: Path) -> None:
    assert process.wait(timeout=2400) == 0, (workdir / "snakemake.log").read_text()[-5000:]


def without_volatile(value: Any) -> Any:
    """A result or log record less what legitimately differs between two machines: timings
    and the recorded emulator (every other provenance field, weight digests included, stays)."""
    if isinstance(value, dict):
        return {
            k: without_volatile(v)
            for k, v in value.items()
            if k not in TIMING_KEYS and k != "emulated_by" and not k.endswith("_at")
        }
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def step_log(folder: Path) -> list[Any]:
    lines = (folder / BLUR_RUN / "train_log.jsonl").read_text().splitlines()
    return [without_volatile(json.loads(line)) for line in lines]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The native run, then one emulated copy per CPU model (the two in parallel)."""
    executable = emulator()
    native = tmp_path_factory.mktemp("native")
    shutil.copytree(REPO / "config", native / "config")
    finish(run(native), native)
    folders, processes = {"native": native}, []
    for model in CPU_MODELS:
        folder = tmp_path_factory.mktemp(model)
        shutil.copytree(native, folder, dirs_exist_ok=True, symlinks=True)
        env = {EMULATOR_VARIABLE: f"{executable} -cpu {model}"}
        processes.append((run(folder, "--forcerun", *RERUN, env=env), folder))
        folders[model] = folder
    for process, folder in processes:
        finish(process, folder)
    return folders


@pytest.mark.skipif(not pins_apply(), reason="the pins apply to x86-64 CPUs with AVX2 only")
@pytest.mark.parametrize("model", CPU_MODELS)
def test_emulated_cpu_gives_this_machines_bits(runs: dict[str, Path], model: str) -> None:
    native, emulated = runs["native"], runs[model]
    for name in EMULATED_RESULTS:  # the jobs really ran under the emulator, pinned
        numerics = json.loads((emulated / name).read_text())["provenance"]["numerics"]
        assert numerics["emulated_by"].endswith(f"-cpu {model}"), numerics
        assert numerics["pinned"] and numerics["cpu_capability"] == "AVX2", numerics
    for name in WEIGHTS:
        assert sha256_file(emulated / name) == sha256_file(native / name), name
    assert step_log(emulated) == step_log(native)
    for name in EMULATED_RESULTS:
        here = without_volatile(json.loads((native / name).read_text()))
        there = without_volatile(json.loads((emulated / name).read_text()))
        assert there == here, name
