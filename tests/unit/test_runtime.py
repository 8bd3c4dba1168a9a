"""The batch layout: the config's global batch split over processes and micro-batches."""

from __future__ import annotations

import pytest

from bilevel_unlearning.runtime import (
    batch_layout,
    compute_device,
    compute_dtype,
    compute_precision,
    master_precision,
)


@pytest.mark.parametrize("processes", [1, 2, 4, 8])
@pytest.mark.parametrize("micro", [None, 1, 3, 4, 32])
def test_every_layout_multiplies_back_to_the_global_batch(processes: int, micro: int) -> None:
    layout = batch_layout(32, processes, micro)
    assert layout.processes * layout.grad_accum * layout.micro_batch == 32
    assert layout.micro_batch <= (micro or 32)


def test_the_largest_micro_batch_that_divides_the_share_is_used() -> None:
    assert batch_layout(32, 1, 8).as_dict() == {
        "global_batch": 32,
        "micro_batch": 8,
        "grad_accum": 4,
        "processes": 1,
    }
    assert (batch_layout(12, 1, 5).micro_batch, batch_layout(12, 1, 5).grad_accum) == (4, 3)
    assert batch_layout(4, 4).micro_batch == 1 and batch_layout(4, 4).grad_accum == 1
    assert batch_layout(4, 2, 1).describe() == (
        "global batch 4 = 2 processes x 2 accumulation steps x micro-batch 1"
    )


def test_a_batch_that_does_not_split_over_the_processes_says_how_to_fix_it() -> None:
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        batch_layout(4, 3)


def test_the_cpu_machine_computes_on_the_cpu_in_the_configured_dtype() -> None:
    import torch

    assert compute_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert compute_dtype("bfloat16") is torch.bfloat16
    assert compute_dtype("mixed") is torch.bfloat16  # evaluation of a mixed-precision run
    assert compute_precision("mixed") == "bfloat16"  # what lm-eval is told
    assert master_precision("mixed") == "float32" and master_precision("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="precision 'fp8'"):
        compute_dtype("fp8")


def test_multi_gpu_jobs_launch_with_the_projects_accelerate_config() -> None:
    """A user's default accelerate config must not change a run: --config_file is pinned to
    envs/accelerate.yaml, a valid accelerate config for one node without its own precision."""
    from accelerate.commands.config.config_args import load_config_from_file
    from conftest import REPO

    from bilevel_unlearning.runtime import launch_command

    config = REPO / "envs" / "accelerate.yaml"
    command = launch_command(4, str(config))
    assert f"--config_file {config} " in command and "--num_processes 4" in command
    assert launch_command(1, str(config)) == "python -m"
    loaded = load_config_from_file(str(config))
    assert (loaded.mixed_precision, loaded.num_machines) == ("no", 1)


def test_the_slurm_profile_checks_job_status_within_seconds() -> None:
    """At the executor's default 40 s, `snakemake --profile slurm plan` took 42 s."""
    import yaml
    from conftest import REPO

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "profile.yaml").read_text())
    assert profile["slurm-init-seconds-before-status-checks"] <= 5


def test_wmdp_rmu_runs_on_one_gpu_as_the_authors() -> None:
    """Split over 4 ranks with one example each, RMU's token means became per-example means."""
    import yaml
    from conftest import REPO

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "profile.yaml").read_text())
    resources = profile["set-resources"]["unlearn_wmdp"]
    assert resources["gpus"] == resources["gpu"] == 1
