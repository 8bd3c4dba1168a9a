"""The GPU acceptance check's dry mode (--device cpu, tiny sizes) runs, so the script cannot rot.
Every check must pass; on the CPU the 2-process checks run on gloo.

On the CPU it times the real loop's BLUR-NPO and NPO_GDR steps, compares the vectorised
combination with the per-parameter .item() loop (same direction) and dry-runs the tiny workflow
in both precisions.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO


@pytest.mark.workflow
def test_the_dry_mode_runs_every_part_and_reports_numbers(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    command = [
        sys.executable,
        str(REPO / "scripts" / "gpu_check.py"),
        "--device",
        "cpu",
        "--repeats",
        "2",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["device"] == "cpu"
    step = report["step"]
    for method in ("blur_npo", "npo_gdr"):
        assert step[method]["step_s"] > 0 and step[method]["forget_tokens_per_s"] > 0
    assert 0.2 < step["step_time_ratio_blur_over_npo_gdr"] < 5
    combine = report["combine"]
    assert combine["max_relative_difference"] < 1e-5  # both form the same direction
    assert math.isfinite(combine["speedup"])
    for precision in ("bfloat16", "float32"):
        assert report["workflow"][precision]["returncode"] == 0
    assert "BLUR / NPO_GDR" in done.stdout
    # the acceptance checks of the GPU path, each pass or fail (here on 2 gloo processes)
    checks = report["checks"]
    assert {"collectives", "ddp_schedule", "fsdp_resume", "evaluation_7b", "rehearsal"} <= set(
        checks
    )
    assert {name: c["status"] for name, c in checks.items()} == dict.fromkeys(checks, "pass")
    assert checks["fsdp_resume"]["gap"] <= 1e-6
    assert f"{len(checks)} of {len(checks)} passed" in done.stdout
