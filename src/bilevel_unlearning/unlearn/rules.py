"""Rules that combine the forget gradient g_F and the retain gradient g_R into one direction d.

Each rule takes two lists of gradient tensors, one tensor per trainable parameter, in the same
order, and implements SPEC section 1:

    weighted_sum   d = g_F + gamma * g_R                              (Pen, every baseline)
    blur           xi = gamma - <g_R,g_F>/||g_F||^2,  d = g_R + xi * g_F   (BLO_forget_lower)
    blur_reversed  xi = gamma - <g_R,g_F>/||g_R||^2,  d = g_F + xi * g_R   (BLO_forget_upper)
    blur (alpha)   d = g_F + alpha * (g_R - <g_F,g_R>/||g_F||^2 * g_F) = alpha * blur(1/alpha)

Inner products are global: one sum over all tensors (and all shards, see ``inner_products``),
never per tensor. They are computed with fused ``torch._foreach_*`` kernels and stay on the
device as 0-dim tensors: no ``.item()``, no host-device sync; ``GradStats.as_floats`` makes the
single sync when a step is logged.

Memory: the direction is written in place into the retain list ``g_r`` (in training, the
parameters' ``.grad``, so the optimizer reads d with no copy), and the returned list *is*
``g_r``. The caller therefore needs one extra gradient-sized buffer only, for g_F. ``blur`` also
uses ``g_f`` as scratch (it ends up holding xi * g_F); the other rules leave it unchanged. The
only transient allocation is the elementwise product for <g_F, g_R>, freed right after its
reduction (the same size as the temporaries of PyTorch's foreach AdamW).

Degenerate gradients: when the gradient a rule projects on is numerically zero
(||g||^2 <= ZERO_RELATIVE * ||other||^2, which includes g = 0), the projection term is dropped,
i.e. xi = gamma. The direction is then finite: for blur d = g_R + gamma * g_F (= g_R when g_F =
0), for blur_reversed d = g_F + gamma * g_R. Above that threshold the projection is bounded
(its norm is at most ||other||), so no other guard is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch
from torch import Tensor

from bilevel_unlearning.numerics import correctly_rounded_sqrt

AllReduce = Callable[[Tensor], Tensor]

# A squared norm this small relative to the other gradient's is taken as zero: the gradient's
# direction is then rounding noise. 1e-30 means ||g|| <= 1e-15 * ||other||.
ZERO_RELATIVE = 1e-30


@dataclass(frozen=True)
class GradStats:
    """Gradient geometry of one step (figure F1), as 0-dim tensors on the gradients' device.

    ``xi`` is None for the weighted sum; all but ``forget_sq`` are None without a retain loss.
    For the alpha form of blur, ``xi`` is that of blur with gamma = 1/alpha.
    """

    forget_sq: Tensor  # ||g_F||^2
    retain_sq: Tensor | None = None  # ||g_R||^2
    inner: Tensor | None = None  # <g_F, g_R>
    cosine: Tensor | None = None
    xi: Tensor | None = None

    @classmethod
    def of_forget_only(
        cls, g_f: Sequence[Tensor], all_reduce: AllReduce | None = None
    ) -> GradStats:
        """Stats of a method without a retain loss (its direction is g_F itself)."""
        forget_sq = _squared_norm(g_f).unsqueeze(0)
        if all_reduce is not None:
            forget_sq = all_reduce(forget_sq)
        return cls(forget_sq=forget_sq[0])

    def as_floats(self) -> dict[str, float]:
        """The stats that are set, as Python floats, with one device sync for all of them."""
        present = {f.name: getattr(self, f.name) for f in fields(self)}
        present = {name: value for name, value in present.items() if value is not None}
        values = torch.stack([v.to(torch.float64) for v in present.values()]).tolist()
        return dict(zip(present, values, strict=True))


# -- global inner products -----------------------------------------------------------------------


def _check_pair(g_f: Sequence[Tensor], g_r: Sequence[Tensor]) -> None:
    if not g_f:
        raise ValueError("no gradients: the lists of trainable-parameter gradients are empty")
    if len(g_f) != len(g_r):
        raise ValueError(
            f"g_f has {len(g_f)} tensors and g_r {len(g_r)}: both must list the same parameters"
        )


def _accumulation_dtype(grads: Sequence[Tensor]) -> torch.dtype:
    """float32 for half-precision gradients (whose sums would round badly), else their dtype."""
    return torch.promote_types(grads[0].dtype, torch.float32)


def _squared_norm(grads: Sequence[Tensor]) -> Tensor:
    """||g||^2 over all tensors: one fused norm kernel, then a sum of per-tensor squares."""
    norms = torch._foreach_norm(list(grads), 2, dtype=_accumulation_dtype(grads))
    return torch.stack(norms).square().sum()


def _inner(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """<a, b> over all tensors: one fused elementwise product, per-tensor sums (no sync)."""
    dtype = _accumulation_dtype(a)
    products = torch._foreach_mul(list(a), list(b))
    return torch.stack([p.sum(dtype=dtype) for p in products]).sum()


def inner_products(
    g_f: Sequence[Tensor], g_r: Sequence[Tensor], all_reduce: AllReduce | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(||g_F||^2, ||g_R||^2, <g_F, g_R>) summed over every tensor, as 0-dim tensors.

    ``all_reduce`` matters only when each process holds a *shard* of the gradients (FSDP,
    DeepSpeed ZeRO-2/3): the local sums are partial and must be summed across processes. Pass a
    function that sums a tensor over processes, e.g. ``sum_across_processes``; it receives the
    three sums stacked in one vector, so a step costs a single collective. Under DDP (and on one
    device) every process holds the full, already averaged gradient: pass None, since summing
    would multiply every product by the world size.
    """
    _check_pair(g_f, g_r)
    sums = torch.stack([_squared_norm(g_f), _squared_norm(g_r), _inner(g_f, g_r)])
    if all_reduce is not None:
        sums = all_reduce(sums)
    forget_sq, retain_sq, inner = sums.unbind()
    return forget_sq, retain_sq, inner


def sum_across_processes(values: Tensor) -> Tensor:
    """The ``all_reduce`` hook for sharded gradients: one SUM all-reduce, in place."""
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.SUM)
    return values


def _divide_where(use: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator where ``use``, else 0; never evaluates 0/0 into the result."""
    safe = torch.where(use, denominator, torch.ones_like(denominator))
    return torch.where(use, numerator / safe, torch.zeros_like(numerator))


def _cosine(forget_sq: Tensor, retain_sq: Tensor, inner: Tensor) -> Tensor:
    """cos(g_F, g_R); 0 when either gradient is zero."""
    scale = correctly_rounded_sqrt(forget_sq) * correctly_rounded_sqrt(retain_sq)
    return _divide_where(scale > 0, inner, scale)


def _stats(g_f: Sequence[Tensor], g_r: Sequence[Tensor], all_reduce: AllReduce | None) -> GradStats:
    forget_sq, retain_sq, inner = inner_products(g_f, g_r, all_reduce)
    cosine = _cosine(forget_sq, retain_sq, inner)
    return GradStats(forget_sq, retain_sq, inner, cosine)


def _xi(gamma: float, inner: Tensor, onto_sq: Tensor, other_sq: Tensor) -> Tensor:
    """gamma - <g_F, g_R> / ||onto||^2, the projection term dropped if ``onto`` is numerically 0."""
    projection = _divide_where(onto_sq > ZERO_RELATIVE * other_sq, inner, onto_sq)
    return gamma - projection


# -- rules ---------------------------------------------------------------------------------------


def weighted_sum(
    g_f: list[Tensor], g_r: list[Tensor], gamma: float, all_reduce: AllReduce | None = None
) -> tuple[list[Tensor], GradStats]:
    """Penalty form d = g_F + gamma * g_R, written into ``g_r``; ``g_f`` is left unchanged.

    The stats are still computed so that the weighted-sum run can be plotted beside BLUR (F1).
    """
    stats = _stats(g_f, g_r, all_reduce)
    torch._foreach_mul_(g_r, gamma)
    torch._foreach_add_(g_r, g_f)
    return g_r, stats


def blur(
    g_f: list[Tensor], g_r: list[Tensor], gamma: float, all_reduce: AllReduce | None = None
) -> tuple[list[Tensor], GradStats]:
    """BLUR, forget as the lower level: d = g_R + xi * g_F, xi = gamma - <g_R,g_F>/||g_F||^2.

    Then <d, g_F> = gamma ||g_F||^2 (forgetting makes first-order progress whatever g_R is) and d
    agrees with g_R orthogonally to g_F. d is written into ``g_r``; ``g_f`` is overwritten with
    xi * g_F (scratch, so no temporary is allocated).
    """
    stats = _stats(g_f, g_r, all_reduce)
    xi = _xi(gamma, stats.inner, stats.forget_sq, stats.retain_sq)
    torch._foreach_mul_(g_f, xi)
    torch._foreach_add_(g_r, g_f)
    return g_r, _with_xi(stats, xi)


def blur_reversed(
    g_f: list[Tensor], g_r: list[Tensor], gamma: float, all_reduce: AllReduce | None = None
) -> tuple[list[Tensor], GradStats]:
    """Reversed hierarchy: d = g_F + xi * g_R, xi = gamma - <g_R,g_F>/||g_R||^2.

    ``blur`` with the roles swapped (<d, g_R> = gamma ||g_R||^2). d is written into ``g_r``;
    ``g_f`` is left unchanged.
    """
    stats = _stats(g_f, g_r, all_reduce)
    xi = _xi(gamma, stats.inner, stats.retain_sq, stats.forget_sq)
    torch._foreach_mul_(g_r, xi)
    torch._foreach_add_(g_r, g_f)
    return g_r, _with_xi(stats, xi)


def blur_alpha(
    g_f: list[Tensor], g_r: list[Tensor], alpha: float, all_reduce: AllReduce | None = None
) -> tuple[list[Tensor], GradStats]:
    """BLUR in the authors' RMU form: d = g_F + alpha * (g_R - <g_F,g_R>/||g_F||^2 * g_F).

    This is exactly alpha * blur(gamma=1/alpha): the same direction, scaled by the retain
    weight, which changes the step size under SGD but hardly under Adam. Buffers as in ``blur``.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0 for the blur rule (it is 1/gamma), got {alpha}")
    direction, stats = blur(g_f, g_r, 1.0 / alpha, all_reduce)
    torch._foreach_mul_(direction, alpha)
    return direction, stats


def _with_xi(stats: GradStats, xi: Tensor) -> GradStats:
    return GradStats(stats.forget_sq, stats.retain_sq, stats.inner, stats.cosine, xi)


# -- registry ------------------------------------------------------------------------------------


class Rule(Protocol):
    """A rule called by config name: gamma or alpha come from the method's config entry."""

    def __call__(
        self,
        g_f: list[Tensor],
        g_r: list[Tensor],
        method_config: Mapping[str, Any],
        all_reduce: AllReduce | None = None,
    ) -> tuple[list[Tensor], GradStats]: ...


def _gamma(rule: str, config: Mapping[str, Any]) -> float:
    if "alpha" in config:
        raise ValueError(f"rule {rule!r} takes gamma, not alpha (only blur has an alpha form)")
    if "gamma" not in config:
        raise ValueError(f"rule {rule!r} needs gamma in the method config")
    return float(config["gamma"])


def _weighted_sum_rule(
    g_f: list[Tensor],
    g_r: list[Tensor],
    method_config: Mapping[str, Any],
    all_reduce: AllReduce | None = None,
) -> tuple[list[Tensor], GradStats]:
    return weighted_sum(g_f, g_r, _gamma("weighted_sum", method_config), all_reduce)


def _blur_rule(
    g_f: list[Tensor],
    g_r: list[Tensor],
    method_config: Mapping[str, Any],
    all_reduce: AllReduce | None = None,
) -> tuple[list[Tensor], GradStats]:
    """gamma selects the paper's form; alpha alone the RMU form. Both would be ambiguous."""
    if "alpha" in method_config and "gamma" in method_config:
        raise ValueError("rule 'blur' takes gamma or alpha (= 1/gamma, RMU form), not both")
    if "alpha" in method_config:
        return blur_alpha(g_f, g_r, float(method_config["alpha"]), all_reduce)
    return blur(g_f, g_r, _gamma("blur", method_config), all_reduce)


def _blur_reversed_rule(
    g_f: list[Tensor],
    g_r: list[Tensor],
    method_config: Mapping[str, Any],
    all_reduce: AllReduce | None = None,
) -> tuple[list[Tensor], GradStats]:
    return blur_reversed(g_f, g_r, _gamma("blur_reversed", method_config), all_reduce)


RULES: Mapping[str, Rule] = {
    "weighted_sum": _weighted_sum_rule,
    "blur": _blur_rule,
    "blur_reversed": _blur_reversed_rule,
}


def combine(
    rule: str,
    g_f: list[Tensor],
    g_r: list[Tensor],
    method_config: Mapping[str, Any],
    all_reduce: AllReduce | None = None,
) -> GradStats:
    """Apply the named rule, leaving the direction in ``g_r`` (in place); returns the stats."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}: expected one of {', '.join(sorted(RULES))}")
    _, stats = RULES[rule](g_f, g_r, method_config, all_reduce)
    return stats
