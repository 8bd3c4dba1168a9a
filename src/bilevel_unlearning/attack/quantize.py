"""Weight quantization as an attack ("catastrophic failure of LLM unlearning via quantization").

Unlearning often moves weights by less than one quantization step, so rounding the unlearned
model to 4 bits lands it back on the target's grid and the forgotten knowledge returns.

`rtn`: round-to-nearest, asymmetric (min/max with a zero point), per output channel in groups
of `group_size` input columns, written in torch, on any device. The weights are stored
dequantized (the same values an int kernel computes with), so every evaluator reads the
folder unchanged. `bitsandbytes` (CUDA only): the folder keeps the weights and its config
asks transformers to load them in 4 or 8 bits, as the literature did.
Like bitsandbytes, every linear layer is quantized except the output head (lm_head); the
embeddings and norms are kept.
"""

from __future__ import annotations

from typing import Any

import torch

SKIPPED_MODULES = ("lm_head",)


def round_to_nearest(groups: torch.Tensor, bits: int) -> torch.Tensor:
    """Each row of `groups` (..., g) on its own grid of 2**bits levels from its min to its max.

    The error of every value is at most half a step, (max - min) / (2**bits - 1) / 2.
    """
    levels = 2**bits - 1
    values = groups.float()
    low = values.amin(-1, keepdim=True)
    high = values.amax(-1, keepdim=True)
    scale = ((high - low) / levels).clamp_min(torch.finfo(torch.float32).tiny)
    zero = torch.round(-low / scale)
    codes = torch.clamp(torch.round(values / scale) + zero, 0, levels)
    return ((codes - zero) * scale).to(groups.dtype)


def quantize_weight(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """A 2-D weight (out, in) rounded per output channel in groups of `group_size` columns
    (a last, shorter group where `in` is not a multiple)."""
    if weight.dim() != 2:
        raise ValueError(f"quantize_weight takes a 2-D weight, got shape {tuple(weight.shape)}")
    columns = weight.shape[1]
    full = columns - columns % group_size
    parts = []
    if full:
        grouped = weight[:, :full].reshape(weight.shape[0], full // group_size, group_size)
        parts.append(round_to_nearest(grouped, bits).reshape(weight.shape[0], full))
    if full < columns:
        parts.append(round_to_nearest(weight[:, full:], bits))
    return torch.cat(parts, dim=1)


def quantized_layers(model: torch.nn.Module) -> list[str]:
    """Names of the linear layers an attack quantizes (all but the output head)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] not in SKIPPED_MODULES
    ]


@torch.no_grad()
def quantize_model(model: torch.nn.Module, bits: int, group_size: int) -> list[str]:
    """Round every quantized layer's weight in place; returns the layers' names."""
    names = quantized_layers(model)
    modules = dict(model.named_modules())
    for name in names:
        weight = modules[name].weight
        weight.copy_(quantize_weight(weight, bits, group_size))
    return names


def bitsandbytes_config(bits: int) -> dict[str, Any]:
    """The quantization_config transformers applies when it loads the folder (CUDA and the
    bitsandbytes package needed): the default 4-bit type with bf16 compute, or LLM.int8()."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "attacks.quantize.backend bitsandbytes needs the bitsandbytes package and a CUDA "
            "GPU: `pip install bitsandbytes` on the GPU machine, or use backend rtn (torch, "
            "any device)"
        ) from None
    if not torch.cuda.is_available():
        raise RuntimeError(
            "attacks.quantize.backend bitsandbytes loads weights with CUDA kernels and this "
            "machine has no CUDA GPU: use backend rtn here"
        )
    from transformers import BitsAndBytesConfig

    if bits == 4:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    elif bits == 8:
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        raise ValueError(f"bitsandbytes loads 4 or 8 bits, not {bits}")
    return config.to_dict()
