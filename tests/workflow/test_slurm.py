"""Real SLURM: a single-node cluster on this machine runs the tiny workflow through profiles/slurm.

scripts/slurm/start.sh installs (if missing) and starts munged, slurmctld and slurmd; the
workflow runs with `--profile profiles/slurm --profile tests/slurm_profile` (the test override:
the local partition, small resources, no GPUs, squeue as the status command); the assertions
check the workflow's outputs and that every job was an sbatch job that SLURM ran to exit code 0;
scripts/slurm/stop.sh stops what start.sh started.

Needs root (apt-get, daemons, /etc/slurm/slurm.conf): skipped otherwise, or when
BILEVEL_SKIP_SLURM=1. As root, a cluster that does not start is a failure, not a skip.
A cluster that was already running before the test (started by hand) is used and left running.

To keep the test short, the workflow runs one benchmark (BENCHMARK) of the tiny config up to its
sanity report and its first unlearning run: 9 SLURM jobs. (TOFU: with MUSE News alone the
tokenizer, trained on fewer texts, gives a retrain oracle that fails the KnowMem-retain check.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from workflow_helpers import snakemake_command

START = REPO / "scripts" / "slurm" / "start.sh"
STOP = REPO / "scripts" / "slurm" / "stop.sh"
STATE_DIR = Path(os.environ.get("SLURM_STATE_DIR", "/var/tmp/bilevel-unlearning-slurm"))
TINY = REPO / "tests" / "config" / "tiny.yaml"
BENCHMARK = "tofu"
START_TIMEOUT = 900  # apt-get install on a fresh machine included
WORKFLOW_TIMEOUT = 1800

SUBMITTED = re.compile(
    r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+?/rule_([^/]+)/\S*?)\)"
)


def _skip_reason() -> str | None:
    if os.environ.get("BILEVEL_SKIP_SLURM") == "1":
        return "BILEVEL_SKIP_SLURM=1"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return (
            "needs root on Linux: scripts/slurm/start.sh installs Debian packages, starts "
            "munged/slurmctld/slurmd and writes /etc/slurm/slurm.conf"
        )
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason())),
]


def _first_run() -> str:
    """The name of BENCHMARK's first unlearning run in the tiny config (`{method}-{split}`)."""
    import yaml

    tiny = yaml.safe_load(TINY.read_text())
    return f"{tiny['unlearn'][BENCHMARK]['methods'][0]}-{tiny['tofu']['forget_splits'][0]}"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as error:
        return f"({error})"
    return "\n".join(text[-lines:])


def _cluster_logs() -> str:
    parts = []
    for daemon in ("slurmctld", "slurmd"):
        log = STATE_DIR / "log" / f"{daemon}.log"
        parts.append(f"--- tail of {log} ---\n{_tail(log)}")
    return "\n".join(parts)


def _workflow_logs(workdir: Path) -> str:
    parts = []
    output = workdir / "snakemake.out"
    parts.append(f"--- tail of {output} ---\n{_tail(output, 80)}")
    newest = sorted(
        (workdir / ".snakemake" / "slurm_logs").rglob("*.log"), key=lambda p: p.stat().st_mtime
    )
    for log in newest[-3:]:
        parts.append(f"--- tail of {log} ---\n{_tail(log, 30)}")
    for log in sorted((workdir / "results" / "logs").rglob("*.log"))[-3:]:
        parts.append(f"--- tail of {log} ---\n{_tail(log, 20)}")
    return "\n".join(parts)


def _running_before() -> bool:
    """Whether start.sh's daemons were already up (then the test leaves them running)."""
    for daemon in ("slurmctld", "slurmd"):
        pidfile = STATE_DIR / f"{daemon}.pid"
        try:
            pid = int(pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return False
    return True


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[None]:
    started_here = not _running_before()
    begin = time.monotonic()
    result = subprocess.run(
        ["bash", str(START)], capture_output=True, text=True, timeout=START_TIMEOUT
    )
    print(f"\nscripts/slurm/start.sh: {time.monotonic() - begin:.1f} s\n{result.stderr}")
    try:
        if result.returncode != 0:
            pytest.fail(
                f"scripts/slurm/start.sh failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{_cluster_logs()}\n"
                "(set BILEVEL_SKIP_SLURM=1 to skip this test on a machine that cannot run SLURM)"
            )
        yield
    finally:
        if started_here:
            stop = subprocess.run(["bash", str(STOP)], capture_output=True, text=True, timeout=120)
            print(f"scripts/slurm/stop.sh ({stop.returncode}):\n{stop.stderr}")


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config, one benchmark, run through the SLURM profile: the workdir."""
    workdir = tmp_path_factory.mktemp("slurm")
    shutil.copytree(REPO / "config", workdir / "config")
    only = workdir / "one_benchmark.yaml"
    only.write_text(f"benchmarks: [{BENCHMARK}]\n")
    profiles = ["--profile", str(REPO / "profiles" / "slurm")]
    profiles += ["--profile", str(REPO / "tests" / "slurm_profile"), "--workflow-profile", "none"]
    targets = [
        "results/sanity_report.json",
        f"results/{BENCHMARK}/unlearn/{_first_run()}/train_log.jsonl",
        "paper_figures/table_3_tofu.csv",
    ]
    command = snakemake_command(workdir, *profiles, configfiles=(TINY, only), cores=None)
    command += ["--", *targets]
    begin = time.monotonic()
    with (workdir / "snakemake.out").open("w") as out:
        try:
            result = subprocess.run(
                command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, timeout=WORKFLOW_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the workflow did not finish within {WORKFLOW_TIMEOUT} s\n"
                f"{_workflow_logs(workdir)}\n{_cluster_logs()}"
            )
    print(f"snakemake through SLURM: {time.monotonic() - begin:.1f} s")
    if result.returncode != 0:
        pytest.fail(
            f"snakemake failed ({result.returncode}):\n{_workflow_logs(workdir)}\n{_cluster_logs()}"
        )
    return workdir


def test_workflow_outputs_are_complete(slurm_run: Path) -> None:
    results = slurm_run / "results"
    report = json.loads((results / "sanity_report.json").read_text())
    assert report["all_checks_pass"] is True
    assert [b["benchmark"] for b in report["benchmarks"]] == [BENCHMARK]

    run = results / BENCHMARK / "unlearn" / _first_run()
    weights = run / "epoch_1" / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size > 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert log and all("forget_loss" in entry for entry in log)
    table = (slurm_run / "paper_figures" / "table_3_tofu.md").read_text()
    assert "| *Finetuned* |" in table and "| *Retain* |" in table


def test_every_job_ran_through_sbatch(slurm_run: Path) -> None:
    output = (slurm_run / "snakemake.out").read_text()
    submitted = SUBMITTED.findall(output)
    rules = {rule for _, _, rule in submitted}
    assert any(rule.startswith("unlearn") for rule in rules), rules
    assert {"pretrain_base", "finetune_model", f"sanity_{BENCHMARK}", "sanity_report"} <= rules
    assert {f"evaluate_{BENCHMARK}", "table_3_tofu"} <= rules
    # Every job of the plan was submitted: none ran locally on the side.
    assert len(submitted) == int(re.search(r"(\d+) of \1 steps \(100%\) done", output).group(1))

    controller_log = (STATE_DIR / "log" / "slurmctld.log").read_text(errors="replace")
    for jobid, log, rule in submitted:
        assert Path(log).is_file(), f"no SLURM log for job {jobid} ({rule})"
        assert rule in Path(log).read_text(errors="replace"), log
        # slurmctld saw the batch script of that job exit with 0
        assert re.search(rf"_job_complete: JobId={jobid} WEXITSTATUS 0\b", controller_log), (
            f"slurmctld.log has no successful completion of job {jobid} ({rule})"
        )
