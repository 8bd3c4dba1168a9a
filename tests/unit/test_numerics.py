"""CPU kernel pins: which variables a job sets, when they apply, and that they must come first."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bilevel_unlearning import numerics
from bilevel_unlearning.numerics import (
    KERNEL_PINS,
    PinnedTooLateError,
    pin_cpu_numerics,
    pinned_environment,
    pins_apply,
)


def test_pinned_environment_sets_kernels_and_the_config_thread_count() -> None:
    env = pinned_environment(3)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "COMPATIBLE"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert set(pinned_environment(1, native=True)) == {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}
    with pytest.raises(ValueError, match="threads"):
        pinned_environment(0)


@pytest.mark.parametrize(
    ("machine", "flags", "applies"),
    [
        ("x86_64", {"avx2", "fma", "sse4_2"}, True),
        ("x86_64", {"avx", "sse4_2"}, False),  # an older x86 CPU: the bands judge it
        ("aarch64", {"asimd"}, False),
    ],
)
def test_pins_apply_to_x86_64_with_avx2_only(machine, flags, applies) -> None:
    assert pins_apply(machine, frozenset(flags)) is applies


def test_pins_override_what_the_machine_environment_says(monkeypatch) -> None:
    monkeypatch.setattr(numerics, "pins_apply", lambda: True)
    environ = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "8"}
    pin_cpu_numerics(2, environ)
    assert {k: environ[k] for k in KERNEL_PINS} == KERNEL_PINS
    assert environ["OMP_NUM_THREADS"] == "2"
    native = {numerics.NATIVE_VARIABLE: "1", "ATEN_CPU_CAPABILITY": "avx512"}
    pin_cpu_numerics(1, native)
    assert native["ATEN_CPU_CAPABILITY"] == "avx512"  # left to the CPU, on request


def test_pinning_after_torch_is_imported_is_refused() -> None:
    import torch  # noqa: F401  (the test process has it; a job must pin first)

    with pytest.raises(PinnedTooLateError, match="before pin_cpu_numerics"):
        pin_cpu_numerics(1)


def record_in_a_fresh_process(setup: str) -> dict:
    """numerics_record() of a new Python process after `setup` (which pins)."""
    code = f"import json, sys; from bilevel_unlearning import cli, numerics; {setup};"
    code += "print(json.dumps(numerics.numerics_record()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_cli_loads_without_torch_so_it_can_pin_first_and_provenance_records_it() -> None:
    record = record_in_a_fresh_process(
        "assert 'torch' not in sys.modules, 'the cli imported torch before pinning';"
        "numerics.pin_cpu_numerics(1)"
    )
    assert record["threads"] == 1
    if pins_apply():
        assert record["pinned"] and record["cpu_capability"] == "AVX2"


def test_deterministic_jobs_fix_cublas_before_cuda_and_record_torchs_flag() -> None:
    environ: dict[str, str] = {}
    pin_cpu_numerics(1, environ, deterministic=True)
    assert environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    record = record_in_a_fresh_process(
        "numerics.pin_cpu_numerics(1, deterministic=True); numerics.apply_torch_settings(1)"
    )
    assert record["deterministic"] is True
    assert record["environment"]["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
