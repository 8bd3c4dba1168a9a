"""A slice of `make rehearse`: the paper config through the hub mirror, the real launcher and
precision mixed, one method per benchmark (MUSE under FSDP2 over 2 gloo processes, TOFU under
DDP, WMDP in one process); MUSE and WMDP to their evaluation (TOFU's, over Llama-3.2's 128,256
logits in bf16, takes minutes on a CPU: the whole rehearsal runs it)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from workflow_helpers import run_snakemake

pytestmark = pytest.mark.workflow

TARGETS = {
    "muse_news": ("ga", 1),
    "tofu": ("npo_gdr-forget10", 1),
    "wmdp": ("rmu", 1),
}
EVALUATED = ("muse_news", "wmdp")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rehearsal")
    run = root / "run"
    shutil.copytree(REPO / "config", run / "config")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bilevel_unlearning.cli",
            "rehearsal-hub",
            "--configfile",
            str(REPO / "config/paper.yaml"),
            str(REPO / "config/rehearsal.yaml"),
            "--out",
            str(root / "hub"),
            "--bio-forget-file",
            str(run / "gated/bio_remove_dataset.jsonl"),
        ],
        check=True,
        capture_output=True,
    )
    targets = [
        f"results/{benchmark}/eval/{name}/none/epoch_{epoch}.json"
        for benchmark, (name, epoch) in TARGETS.items()
        if benchmark in EVALUATED
    ]
    targets += [
        "results/muse_news/eval/target/none/epoch_0.json",
        f"results/tofu/unlearn/{TARGETS['tofu'][0]}/train_log.jsonl",
    ]
    profile = ["--profile", str(REPO / "profiles/rehearsal")]
    done = run_snakemake(run, *profile, *targets, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return run


def train_log(run: Path, benchmark: str, name: str) -> list[dict]:
    path = run / f"results/{benchmark}/unlearn/{name}/train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_benchmark_runs_as_the_cluster_runs_it(rehearsal: Path) -> None:
    strategies = {}
    for benchmark, (name, _) in TARGETS.items():
        log = train_log(rehearsal, benchmark, name)
        assert log and all(math.isfinite(r["forget_loss"]) for r in log)
        strategies[benchmark] = log[0]["processes"]
    assert strategies == {"muse_news": 2, "tofu": 2, "wmdp": 1}
    job_log = (rehearsal / "results/logs/unlearn/muse_news/ga.log").read_text()
    assert "FSDP2" in job_log


def test_evaluations_score_the_mirrors_models_with_pad_as_eos(rehearsal: Path) -> None:
    for benchmark in EVALUATED:
        name, epoch = TARGETS[benchmark]
        path = rehearsal / f"results/{benchmark}/eval/{name}/none/epoch_{epoch}.json"
        record = json.loads(path.read_text())
        assert record["provenance"]["precision"] == "mixed"
        values = [v for v in record["metrics"].values() if isinstance(v, float)]
        assert values and all(math.isfinite(v) for v in values), record["metrics"]
    target = rehearsal / "results/muse_news/eval/target/none/epoch_0.json"
    # the downloaded target has Llama-2's tokenizer, which has no pad token (hf.with_pad_token)
    assert json.loads(target.read_text())["provenance"]["pad_token"].startswith("eos")
    data = json.loads((rehearsal / "results/muse_news/data/provenance.json").read_text())
    assert all(f["revision"].startswith("mirror-") for f in data["files"].values())
