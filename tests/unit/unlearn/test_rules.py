"""Gradient combination rules: the BLUR identities, degenerate gradients, global inner products,
the sharding hook and in-place memory use.

Tolerances: an identity <d, g> = c is checked as |<d, g> - c| <= TOL * ||d|| * ||g||, since the
rounding error of an inner product scales with the norms of its factors, not with its value
(which may cancel). TOL is 1e-12 for float64 and 1e-5 for float32 gradients.
"""

from __future__ import annotations

import math

import pytest
import torch

from bilevel_unlearning.unlearn import rules
from bilevel_unlearning.unlearn.rules import GradStats

SHAPES = [[(5,)], [(3, 4), (7,)], [(2, 3, 4), (1,), (16, 8)]]
SEEDS = [0, 1, 2]
GAMMAS = [0.1, 1.0, 3.0]  # one per seed
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}

Grads = list[torch.Tensor]


def make_grads(shapes: list[tuple[int, ...]], seed: int, dtype: torch.dtype) -> tuple[Grads, Grads]:
    generator = torch.Generator().manual_seed(seed)
    g_f = [torch.randn(s, generator=generator, dtype=dtype) for s in shapes]
    # A shared component, so g_F and g_R are correlated and the projection is not negligible.
    g_r = [0.7 * f + torch.randn(f.shape, generator=generator, dtype=dtype) for f in g_f]
    return g_f, g_r


def clone(tensors: Grads) -> Grads:
    return [t.clone() for t in tensors]


def flat(tensors: Grads) -> torch.Tensor:
    """All tensors as one float64 vector: the reference for global inner products."""
    return torch.cat([t.reshape(-1) for t in tensors]).double()


def dot(a: Grads, b: Grads) -> float:
    return float(flat(a) @ flat(b))


def norm(a: Grads) -> float:
    return math.sqrt(dot(a, a))


def orthogonal_part(v: Grads, onto: Grads) -> torch.Tensor:
    """v minus its projection on `onto`, flattened."""
    v_flat, onto_flat = flat(v), flat(onto)
    return v_flat - (v_flat @ onto_flat) / (onto_flat @ onto_flat) * onto_flat


def assert_identity(d: Grads, g: Grads, expected: float, dtype: torch.dtype) -> None:
    assert abs(dot(d, g) - expected) <= TOL[dtype] * norm(d) * norm(g)


grad_cases = pytest.mark.parametrize(
    ("shapes", "seed", "dtype"),
    [(s, seed, dt) for s in SHAPES for seed in SEEDS for dt in (torch.float64, torch.float32)],
)


# -- the BLUR identities ---------------------------------------------------------------------


@grad_cases
def test_blur_makes_forget_progress(shapes, seed, dtype):
    g_f, g_r = make_grads(shapes, seed, dtype)
    gamma = GAMMAS[seed]
    d, stats = rules.blur(clone(g_f), clone(g_r), gamma)
    assert_identity(d, g_f, gamma * dot(g_f, g_f), dtype)
    expected_xi = gamma - dot(g_r, g_f) / dot(g_f, g_f)
    assert float(stats.xi) == pytest.approx(expected_xi, rel=TOL[dtype], abs=TOL[dtype])


@grad_cases
def test_blur_keeps_the_retain_gradient_orthogonal_to_g_f(shapes, seed, dtype):
    g_f, g_r = make_grads(shapes, seed, dtype)
    d, _ = rules.blur(clone(g_f), clone(g_r), GAMMAS[seed])
    torch.testing.assert_close(
        orthogonal_part(d, g_f),
        orthogonal_part(g_r, g_f),
        rtol=0,
        atol=TOL[dtype] * 10 * norm(g_r),
    )


@grad_cases
def test_blur_reversed_makes_retain_progress(shapes, seed, dtype):
    g_f, g_r = make_grads(shapes, seed, dtype)
    gamma = GAMMAS[seed]
    d, _ = rules.blur_reversed(clone(g_f), clone(g_r), gamma)
    assert_identity(d, g_r, gamma * dot(g_r, g_r), dtype)
    torch.testing.assert_close(
        orthogonal_part(d, g_r),
        orthogonal_part(g_f, g_r),
        rtol=0,
        atol=TOL[dtype] * 10 * norm(g_f),
    )


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_blur_reversed_is_blur_with_the_roles_swapped(shapes, seed):
    g_f, g_r = make_grads(shapes, seed, torch.float64)
    reversed_d, reversed_stats = rules.blur_reversed(clone(g_f), clone(g_r), GAMMAS[seed])
    swapped_d, swapped_stats = rules.blur(clone(g_r), clone(g_f), GAMMAS[seed])
    torch.testing.assert_close(reversed_d, swapped_d, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(reversed_stats.xi, swapped_stats.xi, rtol=1e-13, atol=1e-13)
    assert torch.equal(reversed_stats.forget_sq, swapped_stats.retain_sq)


@grad_cases
def test_weighted_sum_is_exact(shapes, seed, dtype):
    g_f, g_r = make_grads(shapes, seed, dtype)
    gamma = GAMMAS[seed]
    d, stats = rules.weighted_sum(clone(g_f), clone(g_r), gamma)
    for got, f, r in zip(d, g_f, g_r, strict=True):
        assert torch.equal(got, f + gamma * r)
    assert stats.xi is None
    assert float(stats.inner) == pytest.approx(dot(g_f, g_r), rel=TOL[dtype])


@pytest.mark.parametrize("shapes", SHAPES)
@pytest.mark.parametrize("alpha", [0.5, 800.0])
def test_blur_alpha_is_alpha_times_blur_with_inverse_gamma(shapes, alpha):
    g_f, g_r = make_grads(shapes, 0, torch.float64)
    d, _ = rules.blur_alpha(clone(g_f), clone(g_r), alpha)
    scaled, _ = rules.blur(clone(g_f), clone(g_r), 1.0 / alpha)
    torch.testing.assert_close(d, [alpha * t for t in scaled], rtol=1e-13, atol=1e-13)
    # The formula as SPEC writes it for RMU.
    f, r = flat(g_f), flat(g_r)
    spec = f + alpha * (r - (f @ r) / (f @ f) * f)
    torch.testing.assert_close(flat(d), spec, rtol=1e-12, atol=1e-12 * alpha)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_blur_alpha_rejects_a_nonpositive_alpha(alpha):
    g_f, g_r = make_grads(SHAPES[0], 0, torch.float64)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        rules.blur_alpha(g_f, g_r, alpha)


# -- degenerate gradients ----------------------------------------------------------------------


def test_zero_forget_gradient_drops_the_projection():
    """g_F = 0: xi = gamma and d = g_R + gamma * 0 = g_R, finite (no 0/0)."""
    _, g_r = make_grads(SHAPES[1], 0, torch.float32)
    g_f = [torch.zeros_like(t) for t in g_r]
    d, stats = rules.blur(clone(g_f), clone(g_r), 2.0)
    for got, r in zip(d, g_r, strict=True):
        assert torch.equal(got, r)
    assert float(stats.xi) == 2.0
    assert float(stats.cosine) == 0.0
    assert all(math.isfinite(v) for v in stats.as_floats().values())


def test_zero_retain_gradient_in_the_reversed_rule():
    g_f, _ = make_grads(SHAPES[1], 0, torch.float32)
    g_r = [torch.zeros_like(t) for t in g_f]
    d, stats = rules.blur_reversed(clone(g_f), clone(g_r), 2.0)
    for got, f in zip(d, g_f, strict=True):
        assert torch.equal(got, f)
    assert float(stats.xi) == 2.0


@pytest.mark.parametrize("rule", [rules.weighted_sum, rules.blur, rules.blur_reversed])
def test_both_gradients_zero_give_a_zero_direction(rule):
    zeros = [torch.zeros(s) for s in SHAPES[2]]
    d, stats = rule(clone(zeros), clone(zeros), 1.0)
    assert all(torch.equal(t, torch.zeros_like(t)) for t in d)
    assert all(math.isfinite(v) for v in stats.as_floats().values())


def test_a_numerically_zero_forget_gradient_is_treated_as_zero():
    """||g_F|| = 1e-25 in float32: ||g_F||^2 underflows, the direction stays finite and = g_R."""
    g_f, g_r = make_grads(SHAPES[1], 1, torch.float32)
    tiny = [1e-25 * t for t in g_f]
    d, stats = rules.blur(clone(tiny), clone(g_r), 1.0)
    assert all(torch.isfinite(t).all() for t in d)
    torch.testing.assert_close(d, g_r)
    assert float(stats.xi) == 1.0


def test_a_small_but_resolvable_forget_gradient_keeps_the_projection():
    """||g_F|| = 1e-6 ||g_R|| is far above the threshold: the identity still holds."""
    g_f, g_r = make_grads(SHAPES[2], 2, torch.float64)
    small = [1e-6 * t for t in g_f]
    d, _ = rules.blur(clone(small), clone(g_r), 1.0)
    assert_identity(d, small, dot(small, small), torch.float64)


# -- global inner products and the sharding hook ------------------------------------------------


def test_inner_products_are_global_not_per_tensor():
    """Per tensor, <g_R, g_F> is +1 and -1; globally it is 0, so xi = gamma = 1 and d = g_R + g_F.

    Projecting tensor by tensor would give [1, 0], [0, 1] instead.
    """
    g_f = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    g_r = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, -1.0])]
    d, stats = rules.blur(clone(g_f), clone(g_r), 1.0)
    assert float(stats.inner) == 0.0
    torch.testing.assert_close(d, [torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])])
    pairs = zip(g_f, g_r, strict=True)
    per_tensor = [rules.blur([f.clone()], [r.clone()], 1.0)[0][0] for f, r in pairs]
    assert not torch.equal(torch.stack(per_tensor), torch.stack(d))


@pytest.mark.parametrize("shapes", SHAPES)
def test_inner_products_match_the_flattened_vectors(shapes):
    g_f, g_r = make_grads(shapes, 0, torch.float64)
    forget_sq, retain_sq, inner = rules.inner_products(g_f, g_r)
    assert float(forget_sq) == pytest.approx(dot(g_f, g_f), rel=1e-13)
    assert float(retain_sq) == pytest.approx(dot(g_r, g_r), rel=1e-13)
    assert float(inner) == pytest.approx(dot(g_f, g_r), rel=1e-13)
    assert forget_sq.dim() == retain_sq.dim() == inner.dim() == 0


def test_the_all_reduce_hook_is_called_once_and_its_sums_are_used():
    g_f, g_r = make_grads(SHAPES[2], 0, torch.float64)
    calls: list[torch.Tensor] = []

    def doubling(values: torch.Tensor) -> torch.Tensor:
        calls.append(values.clone())
        return 2 * values

    _, stats = rules.blur(clone(g_f), clone(g_r), 1.0, all_reduce=doubling)
    assert len(calls) == 1 and calls[0].shape == (3,)
    assert float(stats.forget_sq) == pytest.approx(2 * dot(g_f, g_f), rel=1e-13)
    assert float(stats.retain_sq) == pytest.approx(2 * dot(g_r, g_r), rel=1e-13)
    assert float(stats.inner) == pytest.approx(2 * dot(g_f, g_r), rel=1e-13)

    # A hook that changes only <g_F, g_R> must change xi and the direction accordingly.
    def tripled_inner(values: torch.Tensor) -> torch.Tensor:
        return values * torch.tensor([1.0, 1.0, 3.0], dtype=values.dtype)

    d, stats = rules.blur(clone(g_f), clone(g_r), 1.0, all_reduce=tripled_inner)
    xi = 1.0 - 3 * dot(g_f, g_r) / dot(g_f, g_f)
    assert float(stats.xi) == pytest.approx(xi, rel=1e-13)
    torch.testing.assert_close(d, [r + xi * f for f, r in zip(g_f, g_r, strict=True)])


def test_forget_only_stats_use_the_hook():
    g_f, _ = make_grads(SHAPES[1], 0, torch.float64)
    stats = GradStats.of_forget_only(g_f, all_reduce=lambda v: 2 * v)
    assert stats.as_floats() == pytest.approx({"forget_sq": 2 * dot(g_f, g_f)}, rel=1e-13)


def test_sum_across_processes_in_a_one_process_group(tmp_path):
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group already in this process")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        values = torch.tensor([1.0, 2.0, 3.0])
        assert torch.equal(rules.sum_across_processes(values), torch.tensor([1.0, 2.0, 3.0]))
    finally:
        dist.destroy_process_group()


# -- memory: the direction lives in the retain buffers ------------------------------------------


@pytest.mark.parametrize(
    ("rule", "keeps_g_f"),
    [(rules.weighted_sum, True), (rules.blur, False), (rules.blur_reversed, True)],
)
def test_the_direction_is_written_into_the_retain_list(rule, keeps_g_f):
    g_f, g_r = make_grads(SHAPES[2], 0, torch.float32)
    original_f = clone(g_f)
    pointers = [t.data_ptr() for t in g_r]
    d, stats = rule(g_f, g_r, 1.5)
    assert d is g_r
    assert [t.data_ptr() for t in d] == pointers
    assert all(s.numel() == 1 for s in vars(stats).values() if s is not None)  # no big buffers
    if keeps_g_f:
        assert all(torch.equal(a, b) for a, b in zip(g_f, original_f, strict=True))
    else:  # blur keeps xi * g_F in g_f (scratch)
        torch.testing.assert_close(g_f, [float(stats.xi) * t for t in original_f])


def test_blur_alpha_writes_in_place_too():
    g_f, g_r = make_grads(SHAPES[1], 0, torch.float32)
    identities = [id(t) for t in g_r]
    d, _ = rules.blur_alpha(g_f, g_r, 800.0)
    assert d is g_r and [id(t) for t in d] == identities


def test_half_precision_gradients_get_float32_stats():
    g_f, g_r = make_grads(SHAPES[2], 0, torch.float32)
    g_f, g_r = [t.bfloat16() for t in g_f], [t.bfloat16() for t in g_r]
    d, stats = rules.blur(g_f, g_r, 1.0)
    assert all(t.dtype == torch.bfloat16 and torch.isfinite(t).all() for t in d)
    assert stats.forget_sq.dtype == stats.xi.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rules_make_no_host_device_sync_on_cuda():
    g_f, g_r = make_grads(SHAPES[2], 0, torch.float32)
    g_f, g_r = [t.cuda() for t in g_f], [t.cuda() for t in g_r]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for rule in (rules.weighted_sum, rules.blur, rules.blur_reversed):
            rule(clone(g_f), clone(g_r), 1.0)
        rules.blur_alpha(clone(g_f), clone(g_r), 800.0)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# -- the registry --------------------------------------------------------------------------------


def test_rule_names_are_the_config_schema_names():
    assert set(rules.RULES) == {"weighted_sum", "blur", "blur_reversed"}


@pytest.mark.parametrize(
    ("rule", "config", "direct"),
    [
        ("weighted_sum", {"gamma": 2.0}, lambda f, r: rules.weighted_sum(f, r, 2.0)),
        ("blur", {"gamma": 2.0}, lambda f, r: rules.blur(f, r, 2.0)),
        ("blur", {"alpha": 800.0}, lambda f, r: rules.blur_alpha(f, r, 800.0)),
        ("blur_reversed", {"gamma": 0.5}, lambda f, r: rules.blur_reversed(f, r, 0.5)),
    ],
)
def test_rules_by_config_name(rule, config, direct):
    g_f, g_r = make_grads(SHAPES[1], 0, torch.float64)
    expected, expected_stats = direct(clone(g_f), clone(g_r))
    got_r = clone(g_r)
    stats = rules.combine(rule, clone(g_f), got_r, {"forget_loss": "npo", **config})
    assert all(torch.equal(a, b) for a, b in zip(got_r, expected, strict=True))
    assert stats.as_floats() == expected_stats.as_floats()


@pytest.mark.parametrize(
    ("rule", "config", "message"),
    [
        ("blur", {"gamma": 1.0, "alpha": 800.0}, "not both"),
        ("blur", {}, "needs gamma"),
        ("weighted_sum", {}, "needs gamma"),
        ("weighted_sum", {"alpha": 800.0}, "takes gamma, not alpha"),
        ("blur_reversed", {"alpha": 800.0}, "takes gamma, not alpha"),
        ("projection", {"gamma": 1.0}, "unknown rule"),
    ],
)
def test_bad_rule_configs_are_refused(rule, config, message):
    g_f, g_r = make_grads(SHAPES[0], 0, torch.float64)
    with pytest.raises(ValueError, match=message):
        rules.combine(rule, g_f, g_r, config)


def test_mismatched_gradient_lists_are_refused():
    g_f, g_r = make_grads(SHAPES[1], 0, torch.float64)
    with pytest.raises(ValueError, match="same parameters"):
        rules.blur(g_f, g_r[:1], 1.0)
    with pytest.raises(ValueError, match="empty"):
        rules.blur([], [], 1.0)


def test_stats_as_floats_names_every_set_field():
    g_f, g_r = make_grads(SHAPES[1], 0, torch.float64)
    _, stats = rules.blur(clone(g_f), clone(g_r), 1.0)
    values = stats.as_floats()
    assert set(values) == {"forget_sq", "retain_sq", "inner", "cosine", "xi"}
    cosine = dot(g_f, g_r) / (norm(g_f) * norm(g_r))
    assert values["cosine"] == pytest.approx(cosine, rel=1e-13)
    assert set(rules.weighted_sum(clone(g_f), clone(g_r), 1.0)[1].as_floats()) == {
        "forget_sq",
        "retain_sq",
        "inner",
        "cosine",
    }
