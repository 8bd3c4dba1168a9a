"""A dispatch mode that fails when one operation mixes tensors of two devices.

This machine has no GPU, so "the model is on the accelerator" is played by the `meta` device,
which the CPU build of torch has: a tensor that only has a shape. Every operation whose
operands sit on different devices (a CPU batch fed to meta weights: on a GPU, CPU token ids
fed to CUDA weights) raises DeviceMixError naming the operation and the devices. 0-dim CPU
tensors are exempt, as CUDA exempts them (Python scalars wrapped as tensors). Transfers
(`.to`, `copy_`) move between devices by definition and are allowed.

Meta tensors have no values, so the few operations that read a value (`.item()`, a boolean
mask's indices, a copy back to the CPU) get placeholders: enough to run a training step or an
evaluation batch through for its devices, not for its numbers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten
TRANSFERS = {aten._to_copy.default, aten.copy_.default, aten._copy_from.default}


class DeviceMixError(AssertionError):
    """An operation received tensors on two devices."""


class DeviceGuard(TorchDispatchMode):
    """Checks every operation's tensor operands for a device mix; records the devices seen."""

    def __init__(self) -> None:
        super().__init__()
        self.devices: set[str] = set()
        self.operations = 0

    def __enter__(self) -> DeviceGuard:
        # a boolean mask's indices on meta: torch's own placeholder, every element selected
        import torch.fx.experimental._config as fx_config

        self._patch = fx_config.patch(meta_nonzero_assume_all_nonzero=True)
        self._patch.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._patch.__exit__(*exc)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        devices = {t.device.type for t in tensors if t.dim() > 0 or t.device.type != "cpu"}
        self.devices |= devices
        self.operations += 1
        if func not in TRANSFERS and len(devices) > 1:
            shapes = [(tuple(t.shape), t.device.type) for t in tensors]
            raise DeviceMixError(f"{func} mixes devices {sorted(devices)}: operands {shapes}")
        meta = [t for t in tensors if t.is_meta]
        if meta and func is aten._local_scalar_dense.default:
            return _placeholder_scalar(meta[0].dtype)
        target = torch.device(kwargs.get("device") or "meta")
        if meta and func is aten._to_copy.default and target.type != "meta":  # out of meta: zeros
            dtype = kwargs.get("dtype") or meta[0].dtype
            return torch.zeros(meta[0].shape, dtype=dtype, device=target)
        return func(*args, **kwargs)


def _placeholder_scalar(dtype: torch.dtype) -> bool | int | float:
    """A value for `.item()` of a meta tensor: True for flags (finiteness checks pass, a
    generation loop stops after its first token), 0 for integers, 1.0 for floats."""
    if dtype is torch.bool:
        return True
    if not dtype.is_floating_point:
        return 0
    return 1.0
