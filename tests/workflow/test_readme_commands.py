"""The README's cluster commands work as written: each `snakemake` line is dry-run.

The lines are read from the README's "Cluster usage" code block, so the README cannot drift
from what works. `make slurm-profile` links the profile into a temporary XDG config folder
first, as a cluster user does once; then `snakemake --profile slurm ...` must find it by name
and run config/paper.yaml (the profile's config file), with nothing of profiles/local.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from workflow_helpers import planned_jobs

pytestmark = pytest.mark.workflow


def cluster_commands(readme: str) -> list[str]:
    """The `snakemake` lines of the first bash block under '## Cluster usage', comments cut."""
    section = readme.split("## Cluster usage", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's cluster section has no bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith("snakemake ")]


@pytest.fixture(scope="module")
def profile_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a user who ran `make slurm-profile` once."""
    home = tmp_path_factory.mktemp("xdg")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "XDG_CONFIG_HOME": str(home), "PATH": path}
    env.pop("SNAKEMAKE_PROFILE", None)
    done = subprocess.run(
        ["make", "--no-print-directory", "slurm-profile"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "snakemake" / "slurm").resolve() == REPO / "profiles" / "slurm"
    return env


def test_the_readme_lists_the_plain_cluster_command() -> None:
    commands = cluster_commands((REPO / "README.md").read_text())
    assert "snakemake --profile slurm all" in commands
    assert all("--workflow-profile" not in c for c in commands)


@pytest.mark.parametrize(
    "command", cluster_commands((REPO / "README.md").read_text()), ids=lambda c: c.split()[-1]
)
def test_every_readme_cluster_command_dry_runs(command: str, profile_home: dict) -> None:
    argv = [*shlex.split(command), "-n"]
    done = subprocess.run(
        argv, cwd=REPO, env=profile_home, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    jobs = planned_jobs(output)
    if argv[3] == "all":  # the paper config's DAG (hub downloads, 7B runs), not the miniature
        assert "download_data_muse_news" in jobs and "generate_muse_news" not in jobs, jobs
        # Table 1's 11 runs, and the sweep's 3 methods at the 5 gammas other than 1 (at gamma 1
        # they are Table 1's own runs)
        assert jobs["unlearn_muse_news"] == 11 + 3 * 5
