"""Forget and retain losses of the unlearning methods, as pure functions of model outputs.

Conventions shared by every function:

- Causal-LM scoring as Hugging Face does it: the logits at position t score label t+1, and a
  label of ``IGNORE_INDEX`` (-100) is not counted. The labels are shifted (not the logits), so
  a ``(batch, seq, vocab)`` logits tensor is never sliced into a copy.
- Losses are computed in float32 whatever the model's dtype: bfloat16 keeps about 3 significant
  digits, too few for log-probabilities summed over thousands of tokens (NPO's log-ratio is a
  small difference of two such sums).
- Reference quantities (``ref_logits``, ``frozen_hidden``) are detached: the reference model is
  frozen, so no gradient may flow into it even if the caller forgot ``torch.no_grad()``.

Forms that replay the authors' code (SPEC section 2) are config switches beside the standard
forms, never the default:

- ``npo_form: muse_logits``: the authors' MUSE NPO applies logsigmoid to per-position,
  per-vocabulary logit differences (``ref_logits - logits``) instead of sequence log-ratios.
- ``kl_form: raw_logits``: the authors' MUSE KL retain loss calls
  ``F.kl_div(logits, ref_logits, reduction="batchmean", log_target=True)`` on raw logits, which
  are not log-probabilities, so the value is not a KL divergence.

Both replays are restricted to counted positions (the authors' code also scores padding and the
last position, which has no next token); on MUSE's unpadded 2048-token chunks that is the only
difference.

Registry: ``FORGET_LOSSES`` and ``RETAIN_LOSSES`` map config names to a ``LossSpec``, called as
``spec(inputs, method_config)`` with a ``LossInputs``. What the training loop must provide for
each loss (a frozen reference, hidden states, WHP's reinforced model), which method keys it
reads and their defaults are the method catalog's (``bilevel_unlearning.methods``); this module
attaches the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bilevel_unlearning import methods

IGNORE_INDEX = -100

DEFAULTS: Mapping[str, Any] = methods.defaults()


# -- token bookkeeping ----------------------------------------------------------------------------


def next_token_labels(labels: Tensor) -> Tensor:
    """Labels shifted left by one and padded with IGNORE_INDEX: position t is scored on label t+1.

    Shifting the labels instead of slicing the logits (HF's own trick) keeps the logits
    contiguous; the last position is never counted since it predicts past the sequence.
    """
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def counted_positions(labels: Tensor) -> Tensor:
    """Bool mask (batch, seq) of the logit positions whose next label carries loss."""
    return next_token_labels(labels) != IGNORE_INDEX


def token_counts(labels: Tensor) -> Tensor:
    """Number of counted (predicted, not ignored) tokens per sequence, shape (batch,)."""
    return counted_positions(labels).sum(dim=-1)


def _token_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """log p(label_{t+1} | x_<=t) at each position (batch, seq); 0 where nothing is counted."""
    targets = next_token_labels(labels)
    nll = F.cross_entropy(
        logits.float().flatten(0, 1),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return -nll.view_as(targets)


def sequence_logprob(logits: Tensor, labels: Tensor) -> Tensor:
    """Log-likelihood of each sequence's counted tokens, shape (batch,): the NPO log-ratio term."""
    return _token_logprobs(logits, labels).sum(dim=-1)


def _masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum of values over the masked entries.

    ``torch.where`` rather than multiplication, so non-finite values at uncounted positions
    (padding) cannot leak in as NaN.
    """
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    return torch.where(mask, values, zero).sum()


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of values over the masked entries; 0 (not NaN) when none is counted."""
    return _masked_sum(values, mask) / mask.sum().clamp_min(1)


# -- likelihood losses (GA, NPO, SimNPO forget; NLL retain) ---------------------------------------


def nll_loss(logits: Tensor, labels: Tensor, num_tokens: Tensor | int | None = None) -> Tensor:
    """Mean next-token NLL over all counted tokens of the batch (HF's causal-LM loss).

    A token-level mean, so long sequences weigh more than short ones, exactly as
    ``model(..., labels=...).loss``. Under gradient accumulation pass ``num_tokens``, the counted
    tokens of the whole accumulated batch, to get the same mean as one big batch (HF's
    ``num_items_in_batch``). A batch without counted tokens gives 0 where HF gives NaN.
    """
    total = -sequence_logprob(logits, labels).sum()
    if num_tokens is None:
        num_tokens = token_counts(labels).sum().clamp_min(1)
    return total / num_tokens


def ga_loss(logits: Tensor, labels: Tensor, num_tokens: Tensor | int | None = None) -> Tensor:
    """Gradient ascent: the negated mean token NLL of the forget batch."""
    return -nll_loss(logits, labels, num_tokens)


def generic_logits(target_logits: Tensor, reinforced_logits: Tensor, strength: float) -> Tensor:
    """WHP's generic prediction: v_target - strength * relu(v_reinforced - v_target).

    Tokens the reinforced model (the target fine-tuned further on the forget set) favours more
    than the target are the forget set's idiosyncratic tokens; subtracting that boost leaves
    what a model that never saw the forget set would predict.
    """
    return target_logits - strength * F.relu(reinforced_logits - target_logits)


def whp_loss(logits: Tensor, generic: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy towards the generic prediction's top token at every counted position."""
    targets = generic.argmax(dim=-1)
    generic_labels = torch.where(labels == IGNORE_INDEX, labels, torch.roll(targets, 1, dims=1))
    return nll_loss(logits, generic_labels)


def _npo_from_log_ratio(log_ratio: Tensor, beta: float) -> Tensor:
    """-(2/beta) * mean logsigmoid(-beta * log_ratio): NPO's bounded surrogate of ascent."""
    return F.logsigmoid(-beta * log_ratio).mean() * (-2.0 / beta)


def npo_loss(logits: Tensor, ref_logits: Tensor, labels: Tensor, beta: float) -> Tensor:
    """NPO (Zhang et al. 2024), sequence form: -(2/b) mean_i logsig(-b (logp(x_i) - logp_ref(x_i))).

    logp is the summed log-likelihood of the counted tokens under the current model and the
    frozen reference. Equals (2/beta) log 2 when the model is the reference.
    """
    log_ratio = sequence_logprob(logits, labels) - sequence_logprob(ref_logits.detach(), labels)
    return _npo_from_log_ratio(log_ratio, beta)


def npo_muse_logits_loss(logits: Tensor, ref_logits: Tensor, labels: Tensor, beta: float) -> Tensor:
    """The authors' MUSE NPO: -(2/beta) * mean over (position, vocab) of logsig(b (ref - logits)).

    A faithful replay (``npo_form: muse_logits``), not the NPO objective: the "log-ratio" is a
    raw logit difference for every vocabulary entry, not the log-likelihood of the sequence.
    The mean runs over the counted positions only (every vocabulary entry of each). Equals
    (2/beta) log 2 when the logits equal the reference's, like the sequence form.
    """
    difference = ref_logits.detach().float() - logits.float()
    per_position = F.logsigmoid(beta * difference).mean(dim=-1)
    return _masked_mean(per_position, counted_positions(labels)) * (-2.0 / beta)


def simnpo_loss(logits: Tensor, labels: Tensor, beta: float, delta: float) -> Tensor:
    """SimNPO (Fan et al. 2024): -(2/beta) mean_i logsig(-(beta/|y_i|) logp(y_i) - delta).

    Reference-free: the length-normalised log-likelihood replaces NPO's log-ratio, and delta is a
    reward margin. This is the paper's equation (SPEC section 2). The SimNPO and open-unlearning
    code compute logsig(beta * (nll/|y| - delta)), i.e. a margin of beta*delta: replay those
    configs by passing delta * beta. A sequence without counted tokens has |y| taken as 1.
    """
    mean_logprob = sequence_logprob(logits, labels) / token_counts(labels).clamp_min(1)
    return F.logsigmoid(-beta * mean_logprob - delta).mean() * (-2.0 / beta)


def simnpo_muse_logits_loss(logits: Tensor, labels: Tensor, beta: float, delta: float) -> Tensor:
    """SimNPO as its authors' MUSE code computes it (``npo_form: muse_logits``): -(2/beta) *
    mean over (position, vocab) of logsig(-beta * logits - delta), on raw logits, not the
    length-normalised log-likelihood. Their gamma is inside the beta scaling: delta = beta *
    gamma, as for the sequence form. The mean runs over the counted positions only."""
    per_position = F.logsigmoid(-beta * logits.float() - delta).mean(dim=-1)
    return _masked_mean(per_position, counted_positions(labels)) * (-2.0 / beta)


# -- RMU (hidden-state losses) --------------------------------------------------------------------


def _masked_mse(values: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """Mean squared error over the hidden dimension of the masked positions (all if mask is None).

    With a full mask this is ``F.mse_loss(values, target)``; the mask keeps padding out.
    """
    squared = (values.float() - target.float()).square()
    if mask is None:
        return squared.mean()
    per_position = squared.mean(dim=-1)
    return _masked_mean(per_position, mask.bool())


def rmu_control_vector(hidden_size: int, seed: int, topic_index: int) -> Tensor:
    """RMU's fixed random direction u of one topic: torch.rand, normalised to unit length.

    Drawn from its own CPU generator seeded with seed + topic_index, so it is the same on any
    device and in any process, independent of the global RNG state and of the order topics are
    first seen. The caller moves it to the model's device and dtype.
    """
    generator = torch.Generator().manual_seed(seed + topic_index)
    u = torch.rand(hidden_size, generator=generator, dtype=torch.float32)
    return u / u.norm()


def rmu_forget_loss(
    hidden: Tensor, control_vector: Tensor, coefficient: float, mask: Tensor | None = None
) -> Tensor:
    """RMU forget loss: MSE between the layer's hidden states (batch, seq, d) and coefficient * u.

    Pushing forget-set activations towards a large random vector scrambles what later layers read
    from them. ``mask`` (batch, seq), e.g. the attention mask, keeps padding out (the WMDP code
    also scored padding).
    """
    return _masked_mse(hidden, coefficient * control_vector.to(hidden.device), mask)


def rmu_retain_loss(hidden: Tensor, frozen_hidden: Tensor, mask: Tensor | None = None) -> Tensor:
    """RMU retain loss: MSE between current and frozen-model hidden states at counted positions."""
    return _masked_mse(hidden, frozen_hidden.detach(), mask)


# -- KL retain ------------------------------------------------------------------------------------


def kl_loss(
    logits: Tensor, ref_logits: Tensor, labels: Tensor, form: str = "token_distribution"
) -> Tensor:
    """KL retain loss (KLR), keeping the model's predictions on the retain set near the reference.

    ``token_distribution``: KL(p_ref || p_theta) of the next-token distributions, averaged over
    counted positions. This direction is the one TOFU's and open-unlearning's code compute:
    ``F.kl_div(input=log p_theta, target=log p_ref, log_target=True)`` sums
    p_ref * (log p_ref - log p_theta), i.e. KL(target || input). It weighs errors where the
    reference puts mass (mass-covering), which is what preserving utility needs. (SPEC section 2
    writes KL(current || reference); we follow the code the numbers come from.)

    ``raw_logits``: the authors' MUSE replay, ``F.kl_div(logits, ref_logits, log_target=True,
    reduction="batchmean")`` on unnormalised logits: sum over counted positions and vocabulary of
    exp(ref) * (ref - logits), divided by the batch size. It is not a divergence (it can be
    negative) and grows with exp(ref_logits).
    """
    mask = counted_positions(labels)
    if form == "token_distribution":
        log_p = F.log_softmax(logits.float(), dim=-1)
        log_ref = F.log_softmax(ref_logits.detach().float(), dim=-1)
        per_position = F.kl_div(log_p, log_ref, log_target=True, reduction="none").sum(dim=-1)
        return _masked_mean(per_position, mask)
    if form == "raw_logits":
        elementwise = F.kl_div(
            logits.float(), ref_logits.detach().float(), log_target=True, reduction="none"
        )
        return _masked_sum(elementwise.sum(dim=-1), mask) / logits.shape[0]
    raise ValueError(f"unknown kl_form {form!r}: expected 'token_distribution' or 'raw_logits'")


# -- registry -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossInputs:
    """Model outputs for one batch; a loss reads only the fields its LossSpec says it needs."""

    labels: Tensor | None = None
    logits: Tensor | None = None
    ref_logits: Tensor | None = None  # frozen reference model, same batch
    hidden: Tensor | None = None  # (batch, seq, d) output of the RMU layer
    ref_hidden: Tensor | None = None  # the same layer of the frozen reference model
    control_vector: Tensor | None = None  # RMU's u for this batch's topic
    attention_mask: Tensor | None = None  # keeps padding out of the RMU losses
    reinforced_logits: Tensor | None = None  # WHP: the target fine-tuned further on the forget set

    def get(self, name: str) -> Tensor:
        """A field the loss cannot do without; a clear error if the loop did not fill it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"this loss needs LossInputs.{name}, which is None")
        return value


@dataclass(frozen=True)
class LossSpec:
    """A loss callable by config name, with what the training loop must compute for it (the
    catalog's entry)."""

    fn: Callable[[LossInputs, Mapping[str, Any]], Tensor]
    entry: methods.LossEntry

    @property
    def needs_reference(self) -> bool:
        return self.entry.reference

    @property
    def needs_hidden(self) -> bool:
        return self.entry.hidden

    @property
    def needs_reinforced(self) -> bool:
        return self.entry.reinforced

    def __call__(self, inputs: LossInputs, method_config: Mapping[str, Any]) -> Tensor:
        return self.fn(inputs, method_config)


def _setting(config: Mapping[str, Any], key: str) -> Any:
    return config.get(key, DEFAULTS[key])


def _ga(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    return ga_loss(x.get("logits"), x.get("labels"))


def _npo(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    loss = npo_loss if _npo_form(config) == "sequence" else npo_muse_logits_loss
    return loss(x.get("logits"), x.get("ref_logits"), x.get("labels"), float(config["beta"]))


def _npo_form(config: Mapping[str, Any]) -> str:
    form = _setting(config, "npo_form")
    if form not in ("sequence", "muse_logits"):
        raise ValueError(f"unknown npo_form {form!r}: expected 'sequence' or 'muse_logits'")
    return form


def _simnpo(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    beta, delta = float(config["beta"]), float(_setting(config, "delta"))
    loss = simnpo_loss if _npo_form(config) == "sequence" else simnpo_muse_logits_loss
    return loss(x.get("logits"), x.get("labels"), beta, delta)


def _rmu_forget(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    coefficient = float(_setting(config, "steering_coefficient"))
    return rmu_forget_loss(x.get("hidden"), x.get("control_vector"), coefficient, x.attention_mask)


def _nll(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    return nll_loss(x.get("logits"), x.get("labels"))


def _whp(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    generic = generic_logits(
        x.get("ref_logits"), x.get("reinforced_logits"), float(config["reinforcement"])
    )
    return whp_loss(x.get("logits"), generic, x.get("labels"))


def _kl(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    form = _setting(config, "kl_form")
    return kl_loss(x.get("logits"), x.get("ref_logits"), x.get("labels"), form)


def _rmu_retain(x: LossInputs, config: Mapping[str, Any]) -> Tensor:
    return rmu_retain_loss(x.get("hidden"), x.get("ref_hidden"), x.attention_mask)


FORGET_FUNCTIONS = {
    "ga": _ga,
    "npo": _npo,
    "simnpo": _simnpo,
    "rmu": _rmu_forget,
    "nll": _nll,  # Task Vector
    "whp": _whp,
}
RETAIN_FUNCTIONS = {"nll": _nll, "kl": _kl, "rmu": _rmu_retain}


def registry(
    functions: Mapping[str, Callable[[LossInputs, Mapping[str, Any]], Tensor]],
    catalog: Mapping[str, methods.LossEntry],
) -> dict[str, LossSpec]:
    """Each catalog entry with its function; a loss on one side only is an error naming it."""
    if set(functions) != set(catalog):
        missing = sorted(set(catalog) - set(functions))
        extra = sorted(set(functions) - set(catalog))
        raise RuntimeError(
            f"losses without a function: {missing}; functions without a catalog entry: {extra} "
            "(bilevel_unlearning/methods.py lists every loss)"
        )
    return {name: LossSpec(functions[name], catalog[name]) for name in catalog}


FORGET_LOSSES: Mapping[str, LossSpec] = registry(FORGET_FUNCTIONS, methods.FORGET_LOSSES)
RETAIN_LOSSES: Mapping[str, LossSpec] = registry(RETAIN_FUNCTIONS, methods.RETAIN_LOSSES)
