"""BalDRO's forget side: DV tends to the mean, group with ratio 1 is the plain loss, and both
compose with the rules and the loop."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from unlearn_fixtures import examples, tiny_model, unlearner

from bilevel_unlearning.models.encoding import collate
from bilevel_unlearning.unlearn import baldro, losses
from bilevel_unlearning.unlearn.losses import LossInputs


def test_dv_is_a_soft_minimum_that_tends_to_the_mean() -> None:
    values = torch.tensor([0.2, 1.0, 3.0])
    # by hand: -b log((e^{-0.2/b} + e^{-1/b} + e^{-3/b}) / 3)
    b = 0.5
    expected = -b * math.log(sum(math.exp(-v / b) for v in (0.2, 1.0, 3.0)) / 3)
    assert float(baldro.dv_aggregate(values, b)) == pytest.approx(expected, rel=1e-6)
    assert float(baldro.dv_aggregate(values, 1e6)) == pytest.approx(float(values.mean()), rel=1e-4)
    assert float(values.min()) < float(baldro.dv_aggregate(values, 0.5)) < float(values.mean())


def test_group_keeps_the_samples_the_model_still_knows_best() -> None:
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    scores = torch.tensor([-0.1, -5.0, -0.2, -3.0])  # samples 0 and 2 are the likeliest
    assert float(baldro.group_aggregate(values, scores, 0.5)) == pytest.approx(2.0)
    assert float(baldro.group_aggregate(values, scores, 1.0)) == pytest.approx(2.5)
    assert baldro.group_count(3, 0.1) == 1


@pytest.mark.parametrize("name", ["ga", "npo", "simnpo"])
def test_group_with_ratio_one_and_a_large_dv_temperature_equal_the_plain_loss(name: str) -> None:
    model, reference = tiny_model(0), tiny_model(1)
    batch = collate(examples(4, seed=7), pad_id=0)  # equal lengths: token and sample means agree
    with torch.no_grad():
        inputs = LossInputs(
            labels=batch["labels"],
            logits=model(**batch).logits,
            ref_logits=reference(**batch).logits,
        )
    config = {"beta": 0.5, "delta": 0.1}
    plain = float(losses.FORGET_LOSSES[name](inputs, config))
    group = baldro.reweighted_forget_loss(
        name, inputs, {**config, "baldro": "group", "sampling_ratio": 1.0}
    )
    dv = baldro.reweighted_forget_loss(name, inputs, {**config, "baldro": "dv", "beta_dv": 1e7})
    assert float(group) == pytest.approx(plain, rel=1e-5)
    assert float(dv) == pytest.approx(plain, rel=1e-4)


@pytest.mark.parametrize("form", ["dv", "group"])
def test_blur_with_a_baldro_forget_side_trains(tmp_path: Path, form: str) -> None:
    extra = {"baldro": form, **({"beta_dv": 0.5} if form == "dv" else {"sampling_ratio": 0.5})}
    run = unlearner("blur_npo", tmp_path / form, epochs=3, overrides=extra)
    records = run.run()
    assert records[-1].values["forget_loss"] < records[0].values["forget_loss"]
    assert {"inner", "xi"} <= set(records[0].values)
