"""The method catalog: what each forget loss, retain loss and update rule needs and reads.

A method is a forget loss + a retain loss (or none) + a rule that combines their gradients.
This module says, once, for each loss: what the training loop must provide (a frozen reference
model's logits, decoder hidden states, WHP's reinforced model), whether it yields per-sample
values (so BalDRO can reweight it), and which method keys it reads with their defaults; for each
rule, the retain weight it takes. It imports no torch: config validation, the schema test, the
GPU plan and the workflow read it, and `unlearn/losses.py` attaches a function to each name
(a test names a loss left without one, or a function without an entry).

Adding a loss: an entry here, its function in `unlearn/losses.py`, its name in the schema's enum
(docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REQUIRED = "required"  # a key the loss reads that has no default


@dataclass(frozen=True)
class LossEntry:
    """What a loss needs from the loop and which method keys it reads (key -> default)."""

    reference: bool = False  # logits of a frozen copy of the start model
    hidden: bool = False  # hidden states of decoder layers (RMU)
    reinforced: bool = False  # WHP: the start model fine-tuned further on the forget set
    reads: Mapping[str, Any] = field(default_factory=dict)
    per_sample: bool = False  # one value per sample: BalDRO can reweight it


# BalDRO (SPEC section 9) reweights a forget loss's per-sample values: DV on any, G where the
# model's own token log-likelihood scores a sample (not RMU's hidden-state loss).
BALDRO_DV = {"baldro": None, "beta_dv": 1.0}
BALDRO_G = {"sampling_ratio": 0.5}

FORGET_LOSSES: Mapping[str, LossEntry] = {
    "ga": LossEntry(per_sample=True, reads={**BALDRO_DV, **BALDRO_G}),
    "npo": LossEntry(
        reference=True,
        per_sample=True,
        reads={"beta": REQUIRED, "npo_form": "sequence", **BALDRO_DV, **BALDRO_G},
    ),
    "simnpo": LossEntry(
        per_sample=True,
        reads={"beta": REQUIRED, "delta": 0.0, "npo_form": "sequence", **BALDRO_DV, **BALDRO_G},
    ),
    "rmu": LossEntry(
        hidden=True,
        per_sample=True,
        # layers: default the last three (rmu_layers); trainable: all, else mlp.down_proj only
        reads={"layers": None, "steering_coefficient": 6.5, "trainable": None, **BALDRO_DV},
    ),
    "nll": LossEntry(reads={"negation": None}),  # Task Vector: fine-tune, then negate
    "whp": LossEntry(
        reference=True,
        reinforced=True,
        reads={"reinforcement": REQUIRED, "reinforce_epochs": REQUIRED},
    ),
}

RETAIN_LOSSES: Mapping[str, LossEntry] = {
    "nll": LossEntry(),
    "kl": LossEntry(reference=True, reads={"kl_form": "token_distribution"}),
    "rmu": LossEntry(reference=True, hidden=True),
}

# rule -> the retain weights it accepts (one of them); no rule: the forget gradient alone
RULES: Mapping[str, tuple[str, ...]] = {
    "weighted_sum": ("gamma",),
    "blur": ("gamma", "alpha"),
    "blur_reversed": ("gamma",),
}


def loss_entries(method: Mapping[str, Any]) -> list[LossEntry]:
    """The catalog entries of a method's forget loss and retain loss (if any)."""
    entries = [FORGET_LOSSES[method["forget_loss"]]]
    if method.get("retain_loss") is not None:
        entries.append(RETAIN_LOSSES[method["retain_loss"]])
    return entries


def needs_reference(method: Mapping[str, Any]) -> bool:
    """Whether unlearning must keep a frozen copy of the start model."""
    return any(entry.reference for entry in loss_entries(method))


def defaults() -> dict[str, Any]:
    """Every key a loss reads that has a default (the same default wherever it is read)."""
    found: dict[str, Any] = {}
    for entry in (*FORGET_LOSSES.values(), *RETAIN_LOSSES.values()):
        for key, value in entry.reads.items():
            if value not in (None, REQUIRED):
                found.setdefault(key, value)
    return found


def setting(method: Mapping[str, Any], key: str) -> Any:
    """A method's value of a key its losses read, else the catalog's default."""
    return method.get(key, defaults()[key])


def key_users() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Method key -> (the config key naming the loss, the losses that read it): a value set
    for another loss would be silently ignored, so config validation rejects it."""
    users: dict[str, tuple[str, tuple[str, ...]]] = {}
    for side, table in (("forget_loss", FORGET_LOSSES), ("retain_loss", RETAIN_LOSSES)):
        for name, entry in table.items():
            for key in entry.reads:
                loss_key, names = users.get(key, (side, ()))
                users[key] = (loss_key, (*names, name))
    return users


def rmu_layers(method: Mapping[str, Any], num_layers: int) -> list[int]:
    """The decoder layers RMU steers and trains: the method's `layers`, else the last three."""
    default = [max(0, num_layers - 3), max(0, num_layers - 2), num_layers - 1]
    layers = list(method.get("layers") or default)
    outside = [layer for layer in layers if not 0 <= layer < num_layers]
    if outside:
        raise ValueError(
            f"RMU layers {layers}: {outside} not among the model's {num_layers} decoder layers "
            f"(0-{num_layers - 1}); set the method's `layers` for this model, or leave it out "
            "for the last three"
        )
    return layers
