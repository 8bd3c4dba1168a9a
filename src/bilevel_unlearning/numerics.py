"""Pinned CPU kernel paths: the same config and seed give the same bits on any x86-64 CPU.

torch and MKL pick their kernels by CPU model (AVX-512 on one machine, AVX2 on another), and
the two paths round differently in the last bits; training amplifies that into tens of points
on the miniature's tables. Every job therefore fixes, before torch is imported:
- ATen's CPU capability (its vectorised kernels) to AVX2, which every x86-64 CPU of the last
  decade has, Intel's and AMD's alike;
- MKL's conditional numerical reproducibility to COMPATIBLE, the one branch MKL documents as
  giving the same results on Intel and non-Intel CPUs (its AVX2 branch falls back to the
  CPU's own path on AMD);
- oneDNN's maximum ISA to AVX2, and numpy's SIMD dispatch to its AVX2 level (X86_V3);
- the thread count, from the config (MKL's reproducibility holds for a fixed count), never
  from Snakemake's --cores.
Where the pins cannot hold (no AVX2, an ARM CPU) the job runs with the CPU's own kernels, says
so in its provenance, and its numbers are judged against the expected tables' seed bands.
GPU kernels are left to cuBLAS and cuDNN unless the config asks `deterministic: true`: then
torch's deterministic algorithms, a fixed cuBLAS workspace and cuDNN without autotuning, at
a cost that `make gpu-check` reports.

The pins cost speed (MKL's compatible branch is its SSE2 code): benchmarks/cpu_pins.py.
This module imports nothing heavy: it must run before torch.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

# environment variable -> pinned value; read by torch, MKL and oneDNN when they load
KERNEL_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # numpy's SIMD loops of exp, log, log1p, expm1 give other bits on AVX-512 than on AVX2
    # (the census); numpy 2's AVX2 level is X86_V3, these three are everything above it
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# deterministic GPU kernels: cuBLAS needs a fixed workspace before CUDA starts (torch's docs,
# "Reproducibility"); torch's flags follow once torch is loaded (apply_torch_settings)
DETERMINISTIC_PINS = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
DETERMINISTIC_VARIABLE = "BILEVEL_DETERMINISTIC"
# set to 1 to run with the CPU's own kernels (a measurement of what the pins change; recorded)
NATIVE_VARIABLE = "BILEVEL_NATIVE_KERNELS"
PINNABLE_MACHINES = ("x86_64", "amd64")
# e.g. "qemu-x86_64 -cpu EPYC-Milan": every computing job re-executes itself under that
# user-mode emulator, so a real workflow runs as another CPU model would (tests/workflow/
# test_emulated_cpus.py); the job records it (EMULATED_VARIABLE) and does not re-execute again
EMULATOR_VARIABLE = "BILEVEL_CPU_EMULATOR"
EMULATED_VARIABLE = "BILEVEL_EMULATED_BY"


class PinnedTooLateError(RuntimeError):
    """torch was imported before the pins were set, so they would not take effect."""


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def pins_apply(machine: str | None = None, flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU runs the pinned paths: x86-64 with AVX2 and FMA."""
    machine = (machine or platform.machine()).lower()
    if machine not in PINNABLE_MACHINES:
        return False
    flags = cpu_flags() if flags is None else flags
    return {"avx2", "fma"} <= flags


def pinned_here(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this machine's jobs run the pinned kernels (pins apply, none lifted): there the
    committed expected tables are reproduced bit for bit, and any other bits mean a change."""
    environ = os.environ if environ is None else environ
    return pins_apply() and environ.get(NATIVE_VARIABLE) != "1"


def pinned_environment(threads: int, native: bool = False) -> dict[str, str]:
    """The variables a job sets: the thread count always, the kernel pins unless native."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    pins = {name: str(threads) for name in THREAD_VARIABLES}
    return pins if native else {**KERNEL_PINS, **pins}


def run_under_emulator(argv: list[str], environ: MutableMapping[str, str] | None = None) -> None:
    """Re-execute this job under BILEVEL_CPU_EMULATOR, if set and not yet done; else return."""
    environ = os.environ if environ is None else environ
    emulator = environ.get(EMULATOR_VARIABLE, "").split()
    if not emulator or environ.get(EMULATED_VARIABLE):
        return
    environ[EMULATED_VARIABLE] = " ".join(emulator)
    command = [*emulator, sys.executable, "-m", "bilevel_unlearning.cli", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], command, dict(environ))


def pin_cpu_numerics(
    threads: int, environ: MutableMapping[str, str] | None = None, deterministic: bool = False
) -> dict[str, str]:
    """Set the pins in this process's environment, before torch is imported; returns them.

    The pins override what the machine's environment says (that is what makes two machines
    agree); BILEVEL_NATIVE_KERNELS=1 leaves the kernels to the CPU, for measurements.
    """
    environ = os.environ if environ is None else environ
    if environ is os.environ and "torch" in sys.modules:
        raise PinnedTooLateError(
            "torch was imported before pin_cpu_numerics(): the CPU kernel pins would not take "
            "effect. Call it first thing in the job's entry point."
        )
    native = environ.get(NATIVE_VARIABLE) == "1" or not pins_apply()
    pins = pinned_environment(threads, native=native)
    if deterministic:
        pins.update(DETERMINISTIC_PINS, **{DETERMINISTIC_VARIABLE: "1"})
    environ.update(pins)
    return pins


def apply_torch_settings(threads: int) -> None:
    """Once torch is loaded: its intra-op threads, and the deterministic flags if pinned."""
    import torch

    torch.set_num_threads(max(1, threads))
    if os.environ.get(DETERMINISTIC_VARIABLE) == "1":
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def correctly_rounded_sqrt(values: Any) -> Any:
    """The square root of a float32 (or bfloat16) tensor, correctly rounded on every CPU.

    ATen's vectorised CPU square root, float32 and float64 alike, is not correctly rounded and
    its last bits depend on the CPU model even under the AVX2 pin (the census in
    docs/fidelity.md); a one-element tensor takes the scalar path, which is. The float64 root
    is within a few float64 ulps of the exact one, and the exact root of a float32 number is
    never that close to a midpoint between two float32 numbers (53 >= 2 * 24 + 2), so
    rounding it to float32 gives the correctly rounded result, on any CPU and on GPUs.
    """
    return values.double().sqrt().to(values.dtype)


def numerics_record() -> dict[str, Any]:
    """What provenance records: the pins in force and the kernel path torch actually took."""
    import torch

    return {
        "pinned": all(os.environ.get(k) == v for k, v in KERNEL_PINS.items()),
        "native_requested": os.environ.get(NATIVE_VARIABLE) == "1",
        "environment": {
            k: os.environ.get(k) for k in (*KERNEL_PINS, *THREAD_VARIABLES, *DETERMINISTIC_PINS)
        },
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "emulated_by": os.environ.get(EMULATED_VARIABLE),
    }
