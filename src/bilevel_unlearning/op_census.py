"""Operator census: which ATen operators a job runs, and whether their bits depend on the CPU.

A job run with BILEVEL_OP_CENSUS=<folder> records every distinct operator it dispatches (by
name, input dtypes and a shape class), with the inputs of its first call, into
<folder>/<job>-<pid>.pt. `scripts/cpu_census.py` replays each recorded call on those inputs,
natively and under emulated CPU models, and lists the operators whose output bits differ:
the kernels that would make two x86-64 machines disagree although both run the pinned paths.
Recording is a TorchDispatchMode, so it sees forward and backward alike, below autograd.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CENSUS_VARIABLE = "BILEVEL_OP_CENSUS"
# one recorded call's inputs larger than this are not kept (the key is still counted)
MAX_SAMPLE_BYTES = 8 * 2**20
# outputs that are uninitialised memory or a host-side fact, not a computed value
UNCOMPARABLE = ("empty", "set_", "_local_scalar_dense", "item", "lift_fresh", "detach", "alias")


def shape_class(shape: tuple[int, ...]) -> str:
    """Rank and size bucket: kernels switch paths on size (vector tails, blocking), not on
    exact shapes, so one call per bucket is enough to see a path."""
    numel = math.prod(shape)
    bucket = next(b for b in (1, 16, 256, 4096, 65536, 2**62) if numel <= b)
    return f"{len(shape)}d<={bucket}"


def _tensors(value: Any) -> list[Any]:
    """Every tensor in a (nested) argument, in order."""
    import torch
    from torch.utils._pytree import tree_leaves

    return [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def op_key(name: str, args: tuple, kwargs: Mapping[str, Any]) -> str:
    """The census's unit: operator overload, and dtype/shape class of each tensor input."""
    described = [
        f"{str(t.dtype).removeprefix('torch.')}:{shape_class(tuple(t.shape))}"
        for t in _tensors((args, kwargs))
    ]
    return f"{name}({', '.join(described)})"


MEMORY_FORMAT_TAG = "__memory_format__:"


def _copy(value: Any, encode: bool = False, decode: bool = False) -> Any:
    """A detached copy of tensors (their values at call time; in-place ops change them).
    torch.save cannot store a memory format: `encode` writes it as a tagged name, `decode`
    reads it back."""
    import torch
    from torch.utils._pytree import tree_map

    def leaf(item: Any) -> Any:
        if isinstance(item, torch.Tensor):
            return item.detach().clone()
        if encode and isinstance(item, torch.memory_format):
            return MEMORY_FORMAT_TAG + str(item).removeprefix("torch.")
        if decode and isinstance(item, str) and item.startswith(MEMORY_FORMAT_TAG):
            return getattr(torch, item.removeprefix(MEMORY_FORMAT_TAG))
        return item

    return tree_map(leaf, value)


def comparable(name: str) -> bool:
    return not any(part in name for part in UNCOMPARABLE)


def _recorder_class() -> type:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        """Counts each operator key and keeps the first call's inputs."""

        def __init__(self) -> None:
            super().__init__()
            self.counts: dict[str, int] = {}
            self.samples: dict[str, tuple[str, Any, Any]] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = str(func.name())
            key = op_key(name, args, kwargs)
            first = key not in self.counts
            self.counts[key] = self.counts.get(key, 0) + 1
            size = sum(t.numel() * t.element_size() for t in _tensors((args, kwargs)))
            if first and comparable(name) and size <= MAX_SAMPLE_BYTES:
                self.samples[key] = (name, _copy(args, True), _copy(kwargs, True))
            return func(*args, **kwargs)

    return Recorder


@contextlib.contextmanager
def recording(job: str, environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """Record the job's operators where BILEVEL_OP_CENSUS names a folder; else do nothing."""
    folder = (os.environ if environ is None else environ).get(CENSUS_VARIABLE)
    if not folder:
        yield
        return
    import torch

    recorder = _recorder_class()()
    with recorder:
        yield
    samples = {k: v for k, v in recorder.samples.items() if _picklable(v)}
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{job}-{os.getpid()}.pt"
    partial = target.with_suffix(".partial")
    torch.save({"job": job, "counts": recorder.counts, "samples": samples}, partial)
    partial.replace(target)


def _picklable(value: Any) -> bool:
    import io
    import pickle

    import torch

    try:
        torch.save(value, io.BytesIO())
    except (TypeError, pickle.PicklingError, AttributeError, RuntimeError):
        return False
    return True


def resolve(name: str) -> Any:
    """`aten::addmm.out` -> torch.ops.aten.addmm.out."""
    import torch

    namespace, rest = name.split("::", 1)
    packet, _, overload = rest.partition(".")
    return getattr(getattr(getattr(torch.ops, namespace), packet), overload or "default")


def tensor_digest(values: Any) -> str:
    """SHA-256 over the bytes, dtypes and shapes of every tensor in a (nested) value."""
    import torch

    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            if value.device.type != "cpu" or value.layout != torch.strided:
                return  # a meta tensor has no values (a shape is all there is to compare)
            flat = torch.empty(value.numel(), dtype=value.dtype)  # stride 1, whatever value's
            flat.copy_(value.detach().reshape(-1))
            if flat.is_complex():
                flat = torch.view_as_real(flat).reshape(-1)
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, (list, tuple)):
            for v in value:
                visit(v)
        elif isinstance(value, Mapping):
            for k in sorted(value):
                visit(value[k])
        elif isinstance(value, (int, float, bool)) or value is None:
            digest.update(repr(value).encode())

    visit(values)
    return digest.hexdigest()


def replay(name: str, args: Any, kwargs: Any) -> str:
    """Run one recorded call on (a copy of) its inputs; digest of its outputs and of its
    inputs after (in-place and out= ops write there). Random ops start from a fixed seed."""
    import torch

    args, kwargs = _copy(args, decode=True), _copy(kwargs, decode=True)
    torch.manual_seed(0)
    try:
        out = resolve(name)(*args, **kwargs)
    except Exception as error:  # a census line, not a failure
        return f"error: {type(error).__name__}"
    return tensor_digest((out, args, kwargs))
