"""Forget and retain losses: hand-computed values, the NPO fixed point, masking of padding and
the registry the training loop calls by config name."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bilevel_unlearning.unlearn import losses
from bilevel_unlearning.unlearn.losses import IGNORE_INDEX, LossInputs

X = IGNORE_INDEX
E = math.e


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def tiny_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Vocabulary 3, two sequences of 3 tokens, logits chosen so log-probs are easy by hand.

    Sequence 0: position 0 scores label 0 under uniform logits (log 1/3), position 1 scores
    label 1 under [1, 0, 0] (-log(e + 2)). Sequence 1: its first label is -100 (not counted)
    and position 1 scores label 2 (-log(e + 2)). The first label of a sequence is never scored.
    """
    row = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    logits = torch.tensor([row, row])
    labels = torch.tensor([[X, 0, 1], [2, X, 2]])
    return logits, labels


TINY_LOGPROBS = [-math.log(3) - math.log(E + 2), -math.log(E + 2)]
TINY_COUNTS = [2, 1]


def random_case(seed: int, batch: int = 3, seq: int = 6, vocab: int = 11):
    """Seeded logits, reference logits and labels with some -100 (prompt and padding)."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, seq, vocab, generator=generator)
    ref_logits = logits + 0.5 * torch.randn(batch, seq, vocab, generator=generator)
    labels = torch.randint(vocab, (batch, seq), generator=generator)
    labels[0, :2] = X  # a prompt
    labels[-1, -2:] = X  # padding
    return logits, ref_logits, labels


# -- token bookkeeping ---------------------------------------------------------------------------


def test_sequence_logprob_by_hand():
    logits, labels = tiny_case()
    torch.testing.assert_close(losses.sequence_logprob(logits, labels), torch.tensor(TINY_LOGPROBS))
    assert losses.token_counts(labels).tolist() == TINY_COUNTS


def test_the_first_label_is_never_scored():
    logits, labels = tiny_case()
    changed = labels.clone()
    changed[:, 0] = 1
    torch.testing.assert_close(
        losses.sequence_logprob(logits, changed), losses.sequence_logprob(logits, labels)
    )


# -- forget losses -------------------------------------------------------------------------------


def test_nll_and_ga_by_hand():
    logits, labels = tiny_case()
    nll = -sum(TINY_LOGPROBS) / sum(TINY_COUNTS)
    assert float(losses.nll_loss(logits, labels)) == pytest.approx(nll, rel=1e-6)
    assert float(losses.ga_loss(logits, labels)) == pytest.approx(-nll, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nll_is_hugging_face_causal_lm_loss(seed):
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits, _, labels = random_case(seed)
    vocab = logits.shape[-1]
    cross_entropy = F.cross_entropy(
        logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=X
    )
    torch.testing.assert_close(losses.nll_loss(logits, labels), cross_entropy)
    torch.testing.assert_close(losses.ga_loss(logits, labels), -cross_entropy)
    hugging_face = ForCausalLMLoss(logits, labels, vocab)
    torch.testing.assert_close(losses.nll_loss(logits, labels), hugging_face)


def test_nll_with_the_token_count_of_an_accumulated_batch():
    """Two micro-batches divided by the total token count sum to the loss of the whole batch."""
    logits, _, labels = random_case(0, batch=4)
    total = losses.token_counts(labels).sum()
    parts = [losses.nll_loss(logits[i : i + 2], labels[i : i + 2], total) for i in (0, 2)]
    torch.testing.assert_close(parts[0] + parts[1], losses.nll_loss(logits, labels))


def test_nll_of_a_batch_without_counted_tokens_is_zero():
    logits, labels = tiny_case()
    assert float(losses.nll_loss(logits, torch.full_like(labels, X))) == 0.0


def test_half_precision_logits_are_scored_in_float32():
    logits, _, labels = random_case(0)
    half = logits.bfloat16()
    loss = losses.nll_loss(half, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, losses.nll_loss(half.float(), labels))


@pytest.mark.parametrize("beta", [0.1, 0.15, 2.5])
def test_npo_at_the_reference_is_two_over_beta_log_two(beta):
    logits, _, labels = random_case(0)
    expected = torch.tensor(2 / beta * math.log(2))
    torch.testing.assert_close(losses.npo_loss(logits, logits.clone(), labels, beta), expected)
    torch.testing.assert_close(
        losses.npo_muse_logits_loss(logits, logits.clone(), labels, beta), expected
    )


def test_npo_by_hand():
    """Reference logits all zero: logp_ref = (number of counted tokens) * log(1/3)."""
    logits, labels = tiny_case()
    beta = 0.1
    ratios = [lp - n * math.log(1 / 3) for lp, n in zip(TINY_LOGPROBS, TINY_COUNTS, strict=True)]
    expected = -2 / beta * sum(log_sigmoid(-beta * r) for r in ratios) / 2
    loss = losses.npo_loss(logits, torch.zeros_like(logits), labels, beta)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_npo_muse_logits_by_hand():
    """Mean of logsigmoid(beta * (ref - logits)) over the 3 counted positions x 3 vocab entries."""
    logits, labels = tiny_case()
    beta = 0.15
    counted_rows = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]  # seq 0: 0, 1; seq 1: 1
    values = [log_sigmoid(beta * (0.0 - v)) for row in counted_rows for v in row]
    expected = -2 / beta * sum(values) / len(values)
    loss = losses.npo_muse_logits_loss(logits, torch.zeros_like(logits), labels, beta)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_npo_falls_as_the_forget_likelihood_falls():
    logits, ref_logits, labels = random_case(1)
    target = torch.where(labels == X, 0, labels)
    lowered = logits - 2.0 * F.one_hot(target, logits.shape[-1]).roll(-1, dims=1)
    assert losses.npo_loss(lowered, ref_logits, labels, 0.1) < losses.npo_loss(
        logits, ref_logits, labels, 0.1
    )


def test_no_gradient_reaches_the_reference():
    logits, ref_logits, labels = random_case(0)
    logits.requires_grad_(True)
    ref_logits.requires_grad_(True)
    loss = losses.npo_loss(logits, ref_logits, labels, 0.1)
    (loss + losses.kl_loss(logits, ref_logits, labels)).backward()
    assert ref_logits.grad is None
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize(("beta", "delta"), [(0.7, 0.0), (2.5, 2.0)])
def test_simnpo_by_hand(beta, delta):
    logits, labels = tiny_case()
    means = [lp / n for lp, n in zip(TINY_LOGPROBS, TINY_COUNTS, strict=True)]
    expected = -2 / beta * sum(log_sigmoid(-beta * m - delta) for m in means) / 2
    loss = losses.simnpo_loss(logits, labels, beta, delta)
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_simnpo_muse_logits_by_hand() -> None:
    """One counted position over a 2-entry vocabulary with logits (0, ln 3): the mean over the
    vocabulary of logsig(-b * logit - delta), times -2/b; the uncounted position is ignored."""
    beta, delta = 0.5, 0.1
    logits = torch.tensor([[[0.0, math.log(3.0)], [9.0, -9.0]]])
    labels = torch.tensor([[-100, 1]])  # position 0 scores label 1; position 1 has no next
    terms = [log_sigmoid(-beta * v - delta) for v in (0.0, math.log(3.0))]
    expected = -2 / beta * sum(terms) / 2
    got = losses.simnpo_muse_logits_loss(logits, labels, beta, delta)
    assert float(got) == pytest.approx(expected, rel=1e-6)


# -- KL retain -----------------------------------------------------------------------------------


def two_token_kl_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vocabulary 2, one counted position: p_theta = (1/2, 1/2), p_ref = (3/4, 1/4).

    Position 1's label is -100, so its (very different) reference row must not count.
    """
    logits = torch.zeros(1, 3, 2)
    ref_logits = torch.tensor([[[math.log(3), 0.0], [0.0, 9.0], [0.0, 0.0]]])
    labels = torch.tensor([[0, 1, X]])
    return logits, ref_logits, labels


def test_kl_token_distribution_by_hand_is_kl_ref_to_current():
    logits, ref_logits, labels = two_token_kl_case()
    kl_ref_current = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    kl_current_ref = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    loss = float(losses.kl_loss(logits, ref_logits, labels))
    assert loss == pytest.approx(kl_ref_current, rel=1e-6)
    assert loss != pytest.approx(kl_current_ref, rel=1e-2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kl_is_zero_at_the_reference_and_nonnegative(seed):
    logits, ref_logits, labels = random_case(seed)
    assert float(losses.kl_loss(logits, logits.clone(), labels)) == pytest.approx(0.0, abs=1e-7)
    assert float(losses.kl_loss(logits, ref_logits, labels)) > 0


def test_kl_raw_logits_by_hand():
    """sum over counted positions and vocab of exp(ref) * (ref - logits), / batch size."""
    logits = torch.tensor([[[0.5, -1.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 0.0]]])
    ref_logits = torch.tensor([[[1.0, 0.0], [7.0, 7.0]], [[0.0, -0.5], [7.0, 7.0]]])
    labels = torch.tensor([[0, 1], [0, 1]])  # only position 0 of each sequence is counted
    terms = [(1.0, 0.5), (0.0, -1.0), (0.0, 3.0), (-0.5, 0.0)]  # (ref, logit)
    expected = sum(math.exp(t) * (t - x) for t, x in terms) / 2
    loss = losses.kl_loss(logits, ref_logits, labels, form="raw_logits")
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(loss) < 0  # not a divergence: the reason it is only a replay


def test_kl_raw_logits_is_the_authors_kl_div_call_without_padding():
    """On a batch where every position is counted but the last, it is F.kl_div batchmean of
    the authors' code restricted to the positions that predict a token."""
    logits, ref_logits, labels = random_case(0)
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(logits.shape[-1], labels.shape, generator=generator)
    authors = F.kl_div(logits[:, :-1], ref_logits[:, :-1], reduction="batchmean", log_target=True)
    loss = losses.kl_loss(logits, ref_logits, labels, form="raw_logits")
    torch.testing.assert_close(loss, authors)


def test_unknown_kl_form_is_refused():
    logits, ref_logits, labels = two_token_kl_case()
    with pytest.raises(ValueError, match="unknown kl_form"):
        losses.kl_loss(logits, ref_logits, labels, form="reverse")


# -- padding never counts ------------------------------------------------------------------------

LOGIT_LOSSES = {
    "nll": lambda lg, ref, lb: losses.nll_loss(lg, lb),
    "npo": lambda lg, ref, lb: losses.npo_loss(lg, ref, lb, 0.1),
    "npo_muse_logits": lambda lg, ref, lb: losses.npo_muse_logits_loss(lg, ref, lb, 0.15),
    "simnpo": lambda lg, ref, lb: losses.simnpo_loss(lg, lb, 0.7, 1.0),
    "kl": lambda lg, ref, lb: losses.kl_loss(lg, ref, lb),
    "kl_raw_logits": lambda lg, ref, lb: losses.kl_loss(lg, ref, lb, form="raw_logits"),
}


@pytest.mark.parametrize("name", sorted(LOGIT_LOSSES))
def test_uncounted_positions_do_not_change_a_logit_loss(name):
    """Rewrite the logits (and reference) wherever the next label is -100 or absent."""
    loss = LOGIT_LOSSES[name]
    logits, ref_logits, labels = random_case(2)
    uncounted = ~losses.counted_positions(labels)
    noise = 50 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))
    garbled = torch.where(uncounted[..., None], noise, logits)
    garbled_ref = torch.where(uncounted[..., None], -noise, ref_logits)
    torch.testing.assert_close(loss(garbled, garbled_ref, labels), loss(logits, ref_logits, labels))


# -- RMU -----------------------------------------------------------------------------------------


def test_rmu_control_vector_is_a_deterministic_unit_vector_per_topic():
    u = losses.rmu_control_vector(64, seed=0, topic_index=0)
    assert u.shape == (64,) and u.dtype == torch.float32
    assert float(u.norm()) == pytest.approx(1.0, rel=1e-6)
    assert (u >= 0).all()  # torch.rand: the positive orthant, as in the RMU code
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(u, losses.rmu_control_vector(64, seed=0, topic_index=0))
    assert not torch.equal(u, losses.rmu_control_vector(64, seed=0, topic_index=1))
    assert not torch.equal(u, losses.rmu_control_vector(64, seed=5, topic_index=0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rmu_forget_loss_falls_towards_the_steering_target(seed):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(2, 5, 16, generator=generator)
    u = losses.rmu_control_vector(16, seed, 0)
    target = 6.5 * u
    loss = losses.rmu_forget_loss(hidden, u, 6.5)
    halfway = losses.rmu_forget_loss(hidden + 0.5 * (target - hidden), u, 6.5)
    torch.testing.assert_close(halfway, 0.25 * loss)  # MSE is quadratic in the distance
    torch.testing.assert_close(loss, F.mse_loss(hidden, target.expand_as(hidden)))
    assert float(losses.rmu_forget_loss(target.expand_as(hidden), u, 6.5)) == pytest.approx(0.0)


def test_rmu_losses_ignore_masked_positions():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 8, generator=generator)
    frozen = torch.randn(2, 5, 8, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    garbled = torch.where(mask[..., None].bool(), hidden, 1e3)
    u = losses.rmu_control_vector(8, 0, 0)
    torch.testing.assert_close(
        losses.rmu_forget_loss(garbled, u, 6.5, mask), losses.rmu_forget_loss(hidden, u, 6.5, mask)
    )
    torch.testing.assert_close(
        losses.rmu_retain_loss(garbled, frozen, mask), losses.rmu_retain_loss(hidden, frozen, mask)
    )
    kept = mask.bool()
    torch.testing.assert_close(
        losses.rmu_retain_loss(hidden, frozen, mask), F.mse_loss(hidden[kept], frozen[kept])
    )
    torch.testing.assert_close(
        losses.rmu_retain_loss(hidden, frozen, torch.ones_like(mask)), F.mse_loss(hidden, frozen)
    )
    assert float(losses.rmu_retain_loss(hidden, hidden.clone(), mask)) == 0.0


# -- the registry --------------------------------------------------------------------------------


def test_catalog_registry_and_schema_name_the_same_losses_rules_and_keys():
    from bilevel_unlearning import methods
    from bilevel_unlearning.config import load_schema
    from bilevel_unlearning.unlearn import rules

    method = load_schema()["$defs"]["method"]["properties"]
    assert (
        set(losses.FORGET_LOSSES)
        == set(methods.FORGET_LOSSES)
        == set(method["forget_loss"]["enum"])
    )
    assert (
        set(losses.RETAIN_LOSSES)
        == set(methods.RETAIN_LOSSES)
        == set(method["retain_loss"]["enum"])
    )
    assert set(methods.RULES) == set(method["rule"]["enum"]) - {None} == set(rules.RULES)
    weights = {w for names in methods.RULES.values() for w in names}
    read = {key for entry in methods.FORGET_LOSSES.values() for key in entry.reads}
    read |= {key for entry in methods.RETAIN_LOSSES.values() for key in entry.reads}
    assert read | weights <= set(method), sorted((read | weights) - set(method))


def test_a_loss_without_a_function_is_named():
    from bilevel_unlearning import methods

    with pytest.raises(RuntimeError, match=r"without a function: \['kl'\]"):
        losses.registry({"nll": losses._nll, "rmu": losses._rmu_retain}, methods.RETAIN_LOSSES)
    with pytest.raises(RuntimeError, match=r"without a catalog entry: \['extra'\]"):
        losses.registry({**losses.RETAIN_FUNCTIONS, "extra": losses._nll}, methods.RETAIN_LOSSES)


def test_catalog_defaults_are_what_the_losses_read():
    from bilevel_unlearning import methods

    assert losses.DEFAULTS["npo_form"] == "sequence" and losses.DEFAULTS["delta"] == 0.0
    assert methods.setting({}, "steering_coefficient") == 6.5
    assert methods.key_users()["kl_form"] == ("retain_loss", ("kl",))
    assert methods.key_users()["sampling_ratio"] == ("forget_loss", ("ga", "npo", "simnpo"))
    assert methods.rmu_layers({}, 8) == [5, 6, 7] and methods.rmu_layers({"layers": [1]}, 8) == [1]
    with pytest.raises(ValueError, match=r"\[5, 6, 7\] not among the model's 2 decoder layers"):
        methods.rmu_layers({"layers": [5, 6, 7]}, 2)  # was an IndexError deep in the hooks


@pytest.mark.parametrize(
    ("table", "name", "needs_reference", "needs_hidden"),
    [
        ("FORGET_LOSSES", "ga", False, False),
        ("FORGET_LOSSES", "npo", True, False),
        ("FORGET_LOSSES", "simnpo", False, False),
        ("FORGET_LOSSES", "rmu", False, True),
        ("RETAIN_LOSSES", "nll", False, False),
        ("RETAIN_LOSSES", "kl", True, False),
        ("RETAIN_LOSSES", "rmu", True, True),
    ],
)
def test_registry_declares_what_each_loss_needs(table, name, needs_reference, needs_hidden):
    spec = getattr(losses, table)[name]
    assert (spec.needs_reference, spec.needs_hidden) == (needs_reference, needs_hidden)


def test_registry_calls_the_configured_forms():
    logits, ref_logits, labels = random_case(0)
    generator = torch.Generator().manual_seed(0)
    hidden, frozen = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4)
    u, mask = losses.rmu_control_vector(4, 0, 1), torch.ones(2, 3)
    text = LossInputs(labels=labels, logits=logits, ref_logits=ref_logits)
    states = LossInputs(hidden=hidden, ref_hidden=frozen, control_vector=u, attention_mask=mask)
    forget, retain = losses.FORGET_LOSSES, losses.RETAIN_LOSSES
    cases = [
        (forget["ga"](text, {}), losses.ga_loss(logits, labels)),
        (forget["npo"](text, {"beta": 0.1}), losses.npo_loss(logits, ref_logits, labels, 0.1)),
        (
            forget["npo"](text, {"beta": 0.1, "npo_form": "muse_logits"}),
            losses.npo_muse_logits_loss(logits, ref_logits, labels, 0.1),
        ),
        (forget["simnpo"](text, {"beta": 0.7}), losses.simnpo_loss(logits, labels, 0.7, 0.0)),
        (
            forget["simnpo"](text, {"beta": 0.7, "delta": 0.07, "npo_form": "muse_logits"}),
            losses.simnpo_muse_logits_loss(logits, labels, 0.7, 0.07),
        ),
        (forget["rmu"](states, {}), losses.rmu_forget_loss(hidden, u, 6.5, mask)),
        (
            forget["rmu"](states, {"steering_coefficient": 20.0}),
            losses.rmu_forget_loss(hidden, u, 20.0, mask),
        ),
        (retain["nll"](text, {}), losses.nll_loss(logits, labels)),
        (retain["kl"](text, {}), losses.kl_loss(logits, ref_logits, labels)),
        (
            retain["kl"](text, {"kl_form": "raw_logits"}),
            losses.kl_loss(logits, ref_logits, labels, form="raw_logits"),
        ),
        (retain["rmu"](states, {}), losses.rmu_retain_loss(hidden, frozen, mask)),
    ]
    for got, expected in cases:
        assert torch.equal(got, expected)


def test_registry_reports_missing_inputs_and_unknown_forms():
    logits, ref_logits, labels = random_case(0)
    with pytest.raises(ValueError, match="ref_logits"):
        losses.FORGET_LOSSES["npo"](LossInputs(labels=labels, logits=logits), {"beta": 0.1})
    text = LossInputs(labels=labels, logits=logits, ref_logits=ref_logits)
    with pytest.raises(ValueError, match="unknown npo_form"):
        losses.FORGET_LOSSES["npo"](text, {"beta": 0.1, "npo_form": "logits"})


def test_whp_generic_logits_subtract_the_reinforced_boost() -> None:
    target = torch.tensor([[[1.0, 2.0, 0.0]]])
    reinforced = torch.tensor([[[3.0, 1.0, 0.5]]])
    # relu(reinforced - target) = [2, 0, 0.5]; strength 1.5 -> target - [3, 0, 0.75]
    expected = torch.tensor([[[-2.0, 2.0, -0.75]]])
    torch.testing.assert_close(losses.generic_logits(target, reinforced, 1.5), expected)


def test_whp_loss_is_cross_entropy_towards_the_generic_top_token() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 7, generator=generator)
    generic = torch.randn(2, 5, 7, generator=generator)
    labels = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, -100, -100]])
    # position t predicts token t+1: its target is the generic argmax at t, where t+1 counts
    targets = generic.argmax(-1)[:, :-1]
    counted = labels[:, 1:] != -100
    expected = F.cross_entropy(logits[:, :-1][counted], targets[counted])
    torch.testing.assert_close(losses.whp_loss(logits, generic, labels), expected)
