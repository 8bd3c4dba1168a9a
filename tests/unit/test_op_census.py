"""The operator census: what a recorded job keeps, and that a replay reproduces its bits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bilevel_unlearning.op_census import (
    CENSUS_VARIABLE,
    recording,
    replay,
    shape_class,
    tensor_digest,
)


def test_shape_classes_bucket_by_rank_and_size() -> None:
    assert shape_class(()) == "0d<=1"
    assert shape_class((16,)) == "1d<=16" and shape_class((17,)) == "1d<=256"
    assert shape_class((64, 64)) == "2d<=4096" and shape_class((64, 65)) == "2d<=65536"


def test_a_recorded_job_keeps_forward_and_backward_operators_with_their_inputs(
    tmp_path: Path,
) -> None:
    weight = torch.randn(8, 4, requires_grad=True)
    inputs = torch.randn(3, 4)
    with recording("probe", {CENSUS_VARIABLE: str(tmp_path)}):
        loss = torch.nn.functional.linear(inputs, weight).sqrt().nansum()
        loss.backward()
    (saved,) = tmp_path.glob("probe-*.pt")
    census = torch.load(saved, weights_only=False)
    assert census["job"] == "probe"
    keys = set(census["counts"])
    assert "aten::sqrt(float32:2d<=256)" in keys  # forward
    assert any(k.startswith("aten::mm(") for k in keys)  # backward of the product
    name, args, kwargs = census["samples"]["aten::sqrt(float32:2d<=256)"]
    direct = inputs @ weight.detach().T
    assert torch.equal(args[0], direct)  # the input as it was at the call
    assert replay(name, args, kwargs) == tensor_digest((direct.sqrt(), (direct,), {}))


def test_nothing_is_recorded_without_the_variable(tmp_path: Path) -> None:
    with recording("probe", {}):
        torch.ones(3).sqrt()
    assert not list(tmp_path.iterdir())


def test_the_digest_sees_one_bit_and_the_dtype() -> None:
    values = torch.rand(100)
    flipped = values.clone()
    flipped.view(torch.int32)[17] ^= 1
    assert tensor_digest(values) != tensor_digest(flipped)
    assert tensor_digest(values) != tensor_digest(values.double())
    assert tensor_digest(values) == tensor_digest(values.clone())


@pytest.mark.parametrize("name", ["aten::sqrt", "aten::sqrt.default"])
def test_a_replay_resolves_the_overload(name: str) -> None:
    values = torch.rand(5)
    assert replay(name, (values,), {}) == tensor_digest((values.sqrt(), (values,), {}))
