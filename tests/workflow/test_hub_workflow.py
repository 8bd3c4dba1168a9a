"""Source hub in the workflow, without a network: Snakemake's plan for config/paper.yaml (download
rules instead of the miniature's data and models stages), the gated WMDP bio corpus stopping a
real run before any job, a target built from a downloaded base by finetune_model, and the
`plan` target's GPU table. Each runs the real Snakemake in a temporary working directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO
from workflow_helpers import planned_jobs, run_snakemake

MINIATURE_ONLY = {"train_tokenizer", "pretrain_base", "finetune_model", "sanity_report"}

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hub_workflow")
    shutil.copytree(REPO / "config", folder / "config")
    return folder


def snakemake(workdir: Path, *args: str, overrides: tuple[Path, ...] = ()) -> tuple[int, str]:
    """Snakemake in workdir with config/paper.yaml, then the override files, merged."""
    configfiles = (REPO / "config" / "paper.yaml", *overrides)
    done = run_snakemake(
        workdir, "--printshellcmds", *args, configfiles=configfiles, cores=1, timeout=600
    )
    return done.returncode, done.stdout + done.stderr


def test_paper_plan_downloads_everything_and_warns_about_the_gated_file(workdir: Path) -> None:
    code, output = snakemake(workdir, "--dry-run")
    assert code == 0, output[-3000:]
    jobs = planned_jobs(output)
    downloads = {name for name in jobs if name.startswith("download_")}
    assert downloads == {
        *(f"download_data_{b}" for b in ("muse_news", "muse_books", "tofu", "wmdp")),
        *(f"download_model_muse_{c}_{r}" for c in ("news", "books") for r in ("target", "retrain")),
        *(f"download_model_tofu_{r}" for r in ("full", "retain99", "retain95", "retain90")),
        "download_model_wmdp_original",
        "download_retain_log",  # TOFU's forget-quality reference, one per forget split
    }
    assert jobs["download_retain_log"] == 3
    # `all` evaluates what the outputs read; every epoch is `all_epochs`
    assert jobs["evaluate_muse_news"] == 127 and jobs["evaluate_tofu"] == 24
    assert not [name for name in jobs if name.startswith(("generate_", "sanity_"))]
    assert not MINIATURE_ONLY & set(jobs)
    assert jobs["unlearn_tofu"] == 18 and jobs["unlearn_wmdp"] == 2
    # the dry run shows the plan and, once, how to obtain the gated bio corpus
    assert output.count("WARNING (a real run stops here)") == 1
    assert "bio_remove_dataset.jsonl" in output and "leave `bio` out" in output
    # evaluation reads the task files the download writes (no hub at evaluation time)
    assert "results/wmdp/data/tasks/wmdp_bio.yaml" in output
    assert "--source hub" in output


def test_a_real_run_stops_before_any_job_without_the_gated_file(workdir: Path) -> None:
    code, output = snakemake(workdir, "results/wmdp/data/provenance.json")
    assert code != 0
    assert "The WMDP bio forget corpus is gated" in output
    assert str(workdir / "gated" / "bio_remove_dataset.jsonl") in output
    assert not (workdir / "results" / "logs" / "download").exists()  # no job started


def test_a_target_built_from_a_base_uses_finetune_model(workdir: Path) -> None:
    override = workdir / "build.yaml"
    override.write_text(
        "benchmarks: [muse_news, muse_books]\n"
        "models: {finetune: {replay_general: 0.0, max_length: 2048}}\n"
        "hub:\n"
        "  muse_news: {models: {target: {repo: null, tokenizer: null,"
        " build_from: meta-llama/Llama-2-7b-hf}}}\n"
        "  muse_books: {models: {retrain: {repo: null, tokenizer: null,"
        " build_from: meta-llama/Llama-2-7b-hf}}}\n"
    )
    # the slurm profile's 4 GPUs for a 7B build (profiles/slurm: finetune_model)
    gpus = ("--set-resources", "finetune_model:gpus=4")
    code, output = snakemake(workdir, "--dry-run", *gpus, overrides=(override,))
    assert code == 0, output[-3000:]
    jobs = planned_jobs(output)
    assert jobs["finetune_model"] == 2
    # started as the unlearning jobs are: one process per GPU, the 7B model sharded (FSDP2)
    commands = [line for line in output.splitlines() if "cli finetune" in line]
    assert len(commands) == 2
    for command in commands:
        assert "accelerate launch --config_file" in command
        assert "--num_processes 4" in command
        assert "--precision mixed --strategy fsdp" in command
    assert jobs["download_base_meta_llama__Llama_2_7b_hf"] == 1  # one base for both
    assert "download_model_muse_news_target" not in jobs
    assert "download_model_muse_news_retrain" in jobs  # the other roles still downloaded
    assert "download_model_muse_books_target" in jobs
    assert "--base results/base_models/meta-llama--Llama-2-7b-hf" in output
    assert "--corpus" not in output  # no general corpus under source hub


def test_plan_target_prints_the_gpu_table_without_network(workdir: Path) -> None:
    code, output = snakemake(workdir, "plan")
    assert code == 0, output[-3000:]
    table = (workdir / "results" / "logs" / "plan.log").read_text()
    assert table in output
    rows = {line.split()[0]: line.split() for line in table.splitlines() if "/" in line[:40]}
    # the paper's global batch 4 on 4 GPUs: 4 = 4 processes x 1 accumulation x micro-batch 1
    assert rows["muse_news/blur_npo"][1:5] == ["4", "fsdp", "4=4x1x1", "mixed"]
    assert rows["tofu/blur_npo-forget05"][1:4] == ["1", "ddp", "32=1x4x8"]
    # the gated bio corpus's size is not known, but the run stops after 150 batches
    assert rows["wmdp/rmu"][-1] != "?"
    assert "plan.default_gpus" in table
