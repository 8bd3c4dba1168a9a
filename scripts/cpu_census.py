"""Which kernels' bits depend on the CPU: an operator census of real jobs, replayed on others.

1. `record`: the tiny workflow (data, models, every unlearning loss family, attacks, every
   evaluator) runs with BILEVEL_OP_CENSUS set, so each job writes the distinct ATen operators
   it ran (name, input dtypes, shape class) with the inputs of the first call
   (src/bilevel_unlearning/op_census.py).
2. `compare`: every recorded call is replayed under the pins, on its recorded inputs and on
   fixed random ones, natively and under QEMU's user-mode emulator for each CPU model given
   (`qemu-x86_64 -cpu MODEL`), with the numpy, scipy and math functions the metrics call;
   the script prints the operators whose output bits differ from this CPU's and writes the
   table as Markdown.

    python scripts/cpu_census.py record --workdir .census            # about 10 min
    python scripts/cpu_census.py compare --workdir .census \\
        --cpus Haswell EPYC-Milan Cascadelake-Server --out .census/census.md

The emulator (`apt-get install qemu-user`) runs about 100x slower; replaying is seconds of
native work, so a CPU model takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "config" / "tiny.yaml"
DEFAULT_CPUS = ("Haswell", "EPYC-Milan", "Cascadelake-Server")
RANDOM_SEED = 20261207


def record(workdir: Path, cores: int) -> None:
    """The tiny workflow, every job recording its operators into workdir/ops."""
    run = workdir / "run"
    run.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "config", run / "config", dirs_exist_ok=True)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile")]
    command += ["--directory", str(run), "--cores", str(cores), "all", "robustness"]
    command += ["--configfile", str(TINY), "--forceall"]
    env = {**os.environ, "BILEVEL_OP_CENSUS": str(workdir / "ops")}
    done = subprocess.run(command, cwd=run, env=env)
    if done.returncode:
        raise SystemExit(f"the recorded workflow failed (exit {done.returncode})")


def merge(ops: Path) -> Path:
    """One file of every distinct key's first sample, with the jobs that ran it."""
    import torch

    samples: dict[str, Any] = {}
    jobs: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    files = sorted(ops.glob("*.pt"))
    if not files:
        raise SystemExit(f"no recorded jobs in {ops}: run `record` first")
    for file in files:
        part = torch.load(file, weights_only=False)
        for key, count in part["counts"].items():
            jobs.setdefault(key, set()).add(part["job"])
            counts[key] = counts.get(key, 0) + count
        for key, sample in part["samples"].items():
            samples.setdefault(key, sample)
    merged = ops.parent / "merged.pt"
    torch.save(
        {"samples": samples, "jobs": {k: sorted(v) for k, v in jobs.items()}, "counts": counts},
        merged,
    )
    return merged


def _random_like(args: Any, seed: int) -> Any:
    """The same call with every floating tensor replaced by fixed values in [0.1, 2.1): the
    recorded inputs can be trivial (a first step's zero moments), random ones are not."""
    import torch
    from torch.utils._pytree import tree_map

    generator = torch.Generator().manual_seed(seed)

    def fresh(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            values = torch.rand(value.shape, generator=generator, dtype=torch.float64) * 2 + 0.1
            return values.to(value.dtype)
        return value

    return tree_map(fresh, args)


def library_census() -> dict[str, str]:
    """numpy, scipy and math as the metrics and lm-eval call them, on fixed inputs."""
    import hashlib
    import math
    import statistics

    import numpy as np
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(RANDOM_SEED)
    out: dict[str, str] = {}

    def put(name: str, value: Any) -> None:
        data = np.asarray(value)
        out[name] = hashlib.sha256(data.tobytes() + str(data.dtype).encode()).hexdigest()

    for size in (1000, 100_000):
        for dtype in (np.float64, np.float32):
            x = (rng.random(size) * 4 + 0.01).astype(dtype)
            tag = f"{np.dtype(dtype).name}[{size}]"
            for name in ("exp", "log", "log1p", "sqrt", "tanh", "expm1", "cumsum", "sort"):
                put(f"numpy.{name}({tag})", getattr(np, name)(x))
            for name in ("mean", "std", "sum", "var", "median"):
                put(f"numpy.{name}({tag})", getattr(np, name)(x))
            put(f"numpy.percentile({tag})", np.percentile(x, [5, 50, 95]))
            put(f"numpy.dot({tag})", np.dot(x, x[::-1]))
            put(f"numpy.argsort({tag})", np.argsort(x, kind="stable"))
            put(f"numpy.searchsorted({tag})", np.searchsorted(np.sort(x), x[:100]))
    for n, m in ((40, 40), (400, 300)):
        a, b = rng.random(n), rng.random(m) ** 1.3
        for method in ("exact", "asymp"):
            put(f"scipy.stats.ks_2samp({n},{m},{method})", list(ks_2samp(a, b, method=method)))
    values = [float(v) for v in rng.random(10_000) * 20 - 10]
    put("math.exp", [math.exp(v) for v in values])
    put("math.log", [math.log(abs(v) + 1e-3) for v in values])
    put("math.sqrt", [math.sqrt(abs(v)) for v in values])
    put("math.cos", [math.cos(v) for v in values])
    put("statistics.fmean,stdev", [statistics.fmean(values), statistics.stdev(values)])
    return out


def forms_census() -> dict[str, str]:
    """The project's CPU-independent forms on fixed inputs: the correctly rounded square root
    (its float64 intermediate may differ by CPU, its float32 result must not) and the fused
    AdamW step, beside the foreach step it replaced."""
    import torch

    from bilevel_unlearning.numerics import correctly_rounded_sqrt
    from bilevel_unlearning.op_census import tensor_digest

    generator = torch.Generator().manual_seed(RANDOM_SEED)
    out: dict[str, str] = {}
    for shape in ((), (7,), (100,), (64, 300)):
        x = torch.rand(shape, generator=generator) * 3
        out[f"form: correctly_rounded_sqrt(float32{list(shape)})"] = tensor_digest(
            correctly_rounded_sqrt(x)
        )
        out[f"form: torch.sqrt(float32{list(shape)})"] = tensor_digest(x.sqrt())
    weights = [torch.rand(40, 30, generator=generator) for _ in range(3)]
    grads = [torch.randn(40, 30, generator=generator) for _ in range(3)]
    for fused in (True, False):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.01, fused=fused)
        for step in range(3):
            for p, g in zip(params, grads, strict=True):
                p.grad = g * (step + 1)
            optimizer.step()
        out[f"form: AdamW fused={fused}, 3 steps"] = tensor_digest(params)
    return out


def worker(merged: Path, out: Path) -> None:
    """Replay every sample under the pins; write {key: digest}. Runs under the emulator."""
    from bilevel_unlearning.numerics import pin_cpu_numerics

    pin_cpu_numerics(1)
    import torch

    from bilevel_unlearning.op_census import replay

    torch.set_num_threads(1)
    data = torch.load(merged, weights_only=False)
    digests: dict[str, str] = {"cpu_capability": torch.backends.cpu.get_cpu_capability()}
    for index, (key, (name, args, kwargs)) in enumerate(sorted(data["samples"].items())):
        digests[key] = replay(name, args, kwargs)
        random_args, random_kwargs = _random_like((args, kwargs), RANDOM_SEED + index)
        digests[f"{key} [random inputs]"] = replay(name, random_args, random_kwargs)
    digests.update(library_census())
    digests.update(forms_census())
    out.write_text(json.dumps(digests, indent=1, sort_keys=True))


def run_worker(merged: Path, out: Path, cpu: str | None) -> dict[str, str]:
    command = [sys.executable, __file__, "worker", "--merged", str(merged), "--out", str(out)]
    if cpu is not None:
        emulator = shutil.which("qemu-x86_64")
        if emulator is None:
            raise SystemExit("qemu-x86_64 not found: apt-get install qemu-user")
        command = [emulator, "-cpu", cpu, *command]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"replay on {cpu or 'this CPU'} failed:\n{done.stderr[-3000:]}")
    print(f"replayed on {cpu or 'this CPU'} in {time.monotonic() - start:.0f} s", flush=True)
    return json.loads(out.read_text())


def compare(workdir: Path, cpus: list[str], out: Path, jobs: int) -> int:
    import torch

    merged = merge(workdir / "ops")
    info = torch.load(merged, weights_only=False)
    here = run_worker(merged, workdir / "native.json", None)
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # one emulator per core
        futures = {
            cpu: pool.submit(run_worker, merged, workdir / f"{cpu}.json", cpu) for cpu in cpus
        }
        there = {cpu: future.result() for cpu, future in futures.items()}
    keys = [k for k in sorted(here) if k != "cpu_capability"]
    differing = [k for k in keys if any(there[c].get(k) != here[k] for c in cpus)]
    operators = {k.split(" [")[0] for k in keys if k.startswith("aten::")}
    lines = [
        f"Census: {len(operators)} distinct operator keys recorded in "
        f"{len({j for js in info['jobs'].values() for j in js})} job kinds, "
        f"{len(keys)} replays (recorded and random inputs) plus the libraries, "
        f"on this CPU (`{here['cpu_capability']}` dispatch under the pins) against "
        + ", ".join(f"`{c}` ({there[c]['cpu_capability']})" for c in cpus),
        "",
        "| replay | jobs | calls | " + " | ".join(cpus) + " |",
        "|---|---|---:|" + "---|" * len(cpus),
    ]
    forms = [k for k in keys if k.startswith("form:") and k not in differing]
    for key in differing + forms:  # the project's forms are shown either way
        base = key.split(" [")[0]
        origin = ["our forms"] if key.startswith("form:") else ["metric libraries"]
        jobs = ", ".join(info["jobs"].get(base, origin))
        calls = info["counts"].get(base, "")
        marks = " | ".join("differs" if there[c].get(key) != here[key] else "equal" for c in cpus)
        lines.append(f"| `{key}` | {jobs} | {calls} | {marks} |")
    if not differing:
        lines.append("| (none) | | | " + " | ".join("equal" for _ in cpus) + " |")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)
    return 1 if differing else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record")
    p.add_argument("--workdir", type=Path, default=REPO / ".census")
    p.add_argument("--cores", type=int, default=2)
    p = sub.add_parser("compare")
    p.add_argument("--workdir", type=Path, default=REPO / ".census")
    p.add_argument("--cpus", nargs="+", default=list(DEFAULT_CPUS))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--jobs", type=int, default=2, help="emulators run at once")
    p = sub.add_parser("worker")
    p.add_argument("--merged", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "record":
        record(args.workdir, args.cores)
    elif args.command == "compare":
        out = args.out or args.workdir / "census.md"
        sys.exit(compare(args.workdir, args.cpus, out, args.jobs))
    else:
        worker(args.merged, args.out)


if __name__ == "__main__":
    main()
