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


def test_the_square_root_form_is_correctly_rounded_where_atens_is_not() -> None:
    """ATen's CPU square root is not correctly rounded and its bits depend on the CPU (the
    census); the form must equal the correctly rounded root (Python's math.sqrt, rounded
    once) for every input, 0-d and bfloat16 included."""
    import math

    import torch

    from bilevel_unlearning.numerics import correctly_rounded_sqrt

    values = torch.rand(20_000, generator=torch.Generator().manual_seed(0)) * 4
    exact = torch.tensor([math.sqrt(v) for v in values.double().tolist()], dtype=torch.float64)
    assert torch.equal(correctly_rounded_sqrt(values), exact.float())
    assert correctly_rounded_sqrt(values).dtype == torch.float32
    scalar = torch.tensor(2.0)
    assert correctly_rounded_sqrt(scalar).item() == torch.tensor(math.sqrt(2.0)).float().item()
    half = values[:500].bfloat16()
    exact_half = [math.sqrt(v) for v in half.double().tolist()]
    assert torch.equal(correctly_rounded_sqrt(half), torch.tensor(exact_half).bfloat16())


def test_a_job_re_executes_itself_under_the_configured_emulator_once(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(numerics.os, "execvpe", lambda *args: calls.append(args))
    environ = {numerics.EMULATOR_VARIABLE: "qemu-x86_64 -cpu EPYC-Milan"}
    numerics.run_under_emulator(["evaluate", "--threads", "1"], environ)
    (program, command, env) = calls.pop()
    assert program == "qemu-x86_64" and command[:3] == ["qemu-x86_64", "-cpu", "EPYC-Milan"]
    assert command[3:] == [
        sys.executable,
        "-m",
        "bilevel_unlearning.cli",
        "evaluate",
        "--threads",
        "1",
    ]
    assert env[numerics.EMULATED_VARIABLE] == "qemu-x86_64 -cpu EPYC-Milan"
    numerics.run_under_emulator(["evaluate"], env)  # the re-executed job runs, not again
    numerics.run_under_emulator(["evaluate"], {})  # no emulator asked: runs here
    assert calls == []
