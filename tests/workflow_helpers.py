"""Shared by the workflow and multi-process tests: the one way they run Snakemake, reading its
output, starting two gloo processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from conftest import REPO


def snakemake_command(
    workdir: Path, *args: str, configfiles: Sequence[Path] = (), cores: int | None = 2
) -> list[str]:
    """The repository's workflow in `workdir` (which holds a copy of config/), the config files
    merged over config/config.yaml in order; cores None: a profile sets them."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "workflow" / "Snakefile"),
    ]
    command += ["--directory", str(workdir)]
    command += [] if cores is None else ["--cores", str(cores)]
    command += [*args]
    if configfiles:  # last: --configfile takes every file that follows
        command += ["--configfile", *map(str, configfiles)]
    return command


def run_snakemake(
    workdir: Path,
    *args: str,
    configfiles: Sequence[Path] = (),
    cores: int = 2,
    timeout: int = 1500,
) -> subprocess.CompletedProcess:
    """snakemake_command, run to the end; stdout and stderr captured."""
    command = snakemake_command(workdir, *args, configfiles=configfiles, cores=cores)
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule name -> job count (the 'all' rule left out)."""
    lines = dry_run_output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    jobs = {}
    for line in lines[start + 3 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    jobs.pop("all", None)
    return jobs


def run_two_gloo_processes(
    script: Path, *args: str, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`script args` under torchrun: 2 CPU processes (gloo) on a free local port."""
    from bilevel_unlearning.runtime import torchrun_command

    command = [*torchrun_command(2), str(script), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=script.parent
    )
