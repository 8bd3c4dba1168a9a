"""BalDRO (SPEC section 9): the forget loss's per-sample values reweighted towards the samples
that are hardest to unlearn, as an option of the forget side (method key `baldro`), composable
with any forget loss that has per-sample values and with any rule (BLUR included).

- ``dv`` (BalDRO-DV): -beta_dv * log(mean_i exp(-l_i / beta_dv)), the Donsker-Varadhan dual
  of the worst case over reweightings, as the BalDRO authors' code computes it. A soft minimum:
  it weighs the samples with the lowest forget loss (least forgotten) most, and tends to the
  mean as beta_dv grows.
- ``group`` (BalDRO-G): keep the k = max(1, int(B * sampling_ratio)) samples of the batch with
  the highest current average token log-likelihood (the model still knows them), average their
  forget loss; the retain batch is cut to its first k examples (a random subset: retain
  partners are drawn at random) so both sides weigh the same count.

Both act within one micro-batch: with gradient accumulation (micro_batch_size below the
per-process share) the selection and the log-mean-exp run per micro-batch, not over the
global batch, and the result depends on the split. To keep the authors' semantics set
micro_batch_size to the whole per-process share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bilevel_unlearning.unlearn import losses
from bilevel_unlearning.unlearn.losses import LossInputs

FORMS = ("dv", "group")
DEFAULTS = {key: losses.DEFAULTS[key] for key in ("beta_dv", "sampling_ratio")}


def _masked_row_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of each row over its masked entries, shape (batch,); 0 where none is counted."""
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    return torch.where(mask, values, zero).sum(dim=-1) / mask.sum(dim=-1).clamp_min(1)


def mean_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """Average token log-likelihood of each sequence, shape (batch,)."""
    counts = losses.token_counts(labels).clamp_min(1)
    return losses.sequence_logprob(logits, labels) / counts


def per_sample_forget(name: str, x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    """The forget loss of each sample, shape (batch,): its batch loss is (about) their mean."""
    if name == "ga":  # ascent: the log-likelihood itself is minimised
        return mean_logprob(x.get("logits"), x.get("labels"))
    if name in ("npo", "simnpo"):
        beta = float(config["beta"])
        form = config.get("npo_form", losses.DEFAULTS["npo_form"])
        labels = x.get("labels")
        if form == "muse_logits":
            logits = x.get("logits").float()
            if name == "npo":
                raw = beta * (x.get("ref_logits").detach().float() - logits)
            else:
                raw = -beta * logits - float(config.get("delta", losses.DEFAULTS["delta"]))
            per_position = F.logsigmoid(raw).mean(dim=-1)
            return _masked_row_mean(per_position, losses.counted_positions(labels)) * (-2 / beta)
        if name == "npo":
            ref = losses.sequence_logprob(x.get("ref_logits").detach(), labels)
            log_ratio = losses.sequence_logprob(x.get("logits"), labels) - ref
            return F.logsigmoid(-beta * log_ratio) * (-2 / beta)
        delta = float(config.get("delta", losses.DEFAULTS["delta"]))
        margin = -beta * mean_logprob(x.get("logits"), labels) - delta
        return F.logsigmoid(margin) * (-2 / beta)
    if name == "rmu":
        default = losses.DEFAULTS["steering_coefficient"]
        coefficient = float(config.get("steering_coefficient", default))
        hidden = x.get("hidden").float()
        target = coefficient * x.get("control_vector").to(hidden.device).float()
        per_position = (hidden - target).square().mean(dim=-1)
        return _masked_row_mean(per_position, x.get("attention_mask").bool())
    raise ValueError(f"BalDRO needs per-sample values of the forget loss; {name!r} has none")


def dv_aggregate(values: Tensor, beta_dv: float) -> Tensor:
    """-beta * log(mean exp(-l / beta)), a stable log-sum-exp in float64: at a large beta the
    result is a tiny difference times beta, which float32 would lose."""
    scaled = -values.double() / beta_dv
    dual = -beta_dv * (torch.logsumexp(scaled, dim=0) - math.log(values.shape[0]))
    return dual.to(values.dtype)


def group_count(batch_size: int, sampling_ratio: float) -> int:
    return max(1, int(batch_size * sampling_ratio))


def group_aggregate(values: Tensor, scores: Tensor, sampling_ratio: float) -> Tensor:
    """Mean of the values of the k samples with the highest score (current log-likelihood)."""
    k = group_count(values.shape[0], sampling_ratio)
    chosen = torch.topk(scores.detach(), k).indices
    return values[chosen].mean()


def reweighted_forget_loss(name: str, x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    """The forget loss of a micro-batch under the method's BalDRO form."""
    values = per_sample_forget(name, x, config)
    form = config["baldro"]
    if form == "dv":
        return dv_aggregate(values, float(config.get("beta_dv", DEFAULTS["beta_dv"])))
    if form == "group":
        ratio = float(config.get("sampling_ratio", DEFAULTS["sampling_ratio"]))
        return group_aggregate(values, mean_logprob(x.get("logits"), x.get("labels")), ratio)
    raise ValueError(f"unknown baldro form {form!r}: expected one of {', '.join(FORMS)}")


def retain_rows(batch: Mapping[str, Tensor], config: Mapping[str, Any]) -> dict[str, Tensor]:
    """BalDRO-G's retain side: the first k examples, k as for the forget batch."""
    if config.get("baldro") != "group":
        return dict(batch)
    ratio = float(config.get("sampling_ratio", DEFAULTS["sampling_ratio"]))
    k = group_count(next(iter(batch.values())).shape[0], ratio)
    return {key: value[:k] for key, value in batch.items()}
