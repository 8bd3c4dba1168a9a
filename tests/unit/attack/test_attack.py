"""Robustness attacks: round-to-nearest quantization against hand-computed grids and its error
bound; the relearning fine-tune's exact step count, schedule and effect; the attack step's
model folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import SEED

from bilevel_unlearning.attack.quantize import (
    bitsandbytes_config,
    quantize_model,
    quantize_weight,
    quantized_layers,
    round_to_nearest,
)
from bilevel_unlearning.attack.relearn import relearn, relearn_examples, sample_records
from bilevel_unlearning.attack.run import attack_step
from bilevel_unlearning.models.encoding import collate
from bilevel_unlearning.models.hf import load_model, save_model
from bilevel_unlearning.models.train import schedule_factor


def test_round_to_nearest_hand_computed() -> None:
    # [0, 3] on one bit: levels 0 and 3 (scale 3, zero 0); 1 rounds down, 2 up
    assert round_to_nearest(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), 1).tolist() == [
        [0.0, 0.0, 3.0, 3.0]
    ]
    # [-1, 2] on two bits: scale 1, zero point 1, every integer exact
    values = torch.tensor([[-1.0, 0.0, 1.0, 2.0]])
    assert torch.equal(round_to_nearest(values, 2), values)
    # 0.4 and 1.6 on the grid {-1, 0, 1, 2}
    assert round_to_nearest(torch.tensor([[-1.0, 0.4, 1.6, 2.0]]), 2).tolist() == [
        [-1.0, 0.0, 2.0, 2.0]
    ]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_error_within_half_a_step_and_at_most_two_to_the_bits_values(bits: int) -> None:
    weight = torch.randn(16, 96, generator=torch.Generator().manual_seed(bits))
    group = 32
    rounded = quantize_weight(weight, bits, group)
    groups, original = rounded.reshape(16, 3, group), weight.reshape(16, 3, group)
    step = (original.amax(-1) - original.amin(-1)) / (2**bits - 1)
    error = (groups - original).abs().amax(-1)
    assert torch.all(error <= step / 2 * (1 + 1e-5) + 1e-7)
    for row in groups.reshape(-1, group):
        assert len(torch.unique(row)) <= 2**bits


def test_fewer_bits_lose_more_and_the_last_short_group_is_kept() -> None:
    weight = torch.randn(8, 70, generator=torch.Generator().manual_seed(1))  # 2 groups + 6
    errors = {b: (quantize_weight(weight, b, 32) - weight).abs().mean() for b in (4, 8)}
    assert errors[8] < errors[4] / 8
    last = quantize_weight(weight, 4, 32)[:, 64:]
    assert torch.equal(last, round_to_nearest(weight[:, 64:], 4))
    constant = torch.full((2, 32), 0.25)
    assert torch.equal(quantize_weight(constant, 4, 32), constant)
    with pytest.raises(ValueError, match="2-D"):
        quantize_weight(torch.zeros(3), 4, 2)


def test_quantize_model_rounds_the_linear_layers_but_not_the_head(tiny_model: Any) -> None:
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    names = quantize_model(tiny_model, 4, 16)
    assert names == quantized_layers(tiny_model)
    assert "lm_head" not in names and any(n.endswith("q_proj") for n in names)
    for name, parameter in tiny_model.named_parameters():
        changed = not torch.equal(parameter, before[name])
        quantized = name.removesuffix(".weight") in names
        assert changed == quantized, name  # embeddings, norms and lm_head kept


def test_bitsandbytes_names_the_fix_on_a_machine_without_it() -> None:
    with pytest.raises(RuntimeError, match="backend rtn"):
        bitsandbytes_config(4)


def test_schedule_factor_shapes() -> None:
    cosine = schedule_factor("cosine", total_steps=10, warmup_steps=2)
    assert [cosine(0), cosine(1), cosine(2)] == [0.5, 1.0, 1.0]
    assert cosine(6) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
    assert schedule_factor("linear", 10, 0)(5) == pytest.approx(0.5)
    assert schedule_factor("constant", 10, 0)(9) == 1.0


def test_sample_records_is_seeded_and_without_replacement() -> None:
    records = [{"text": str(i)} for i in range(10)]
    first, again = sample_records(records, 4, 3), sample_records(records, 4, 3)
    assert first == again and len({r["text"] for r in first}) == 4
    assert sample_records(records, 4, 4) != first
    assert sample_records(records, None, 3) == records == sample_records(records, 99, 3)


SETTINGS = {"learning_rate": 3e-3, "batch_size": 2, "max_length": 32, "samples": 6}


def forget_loss(model: Any, tokenizer: Any, examples: list) -> float:
    with torch.no_grad():
        return float(model(**collate(examples, tokenizer.pad_token_id)).loss)


@pytest.mark.parametrize("benchmark", ["muse_news", "tofu", "wmdp"])
def test_relearning_takes_exactly_n_steps_and_lowers_the_forget_loss(
    benchmark: str, data_root: Path, tokenizer: Any, tiny_model: Any
) -> None:
    settings = {**SETTINGS, "steps": 7, "forget_split": "forget05", "topics": ["bio", "cyber"]}
    examples = relearn_examples(benchmark, data_root / benchmark, tokenizer, settings, SEED)
    assert len(examples) == 6
    before = forget_loss(tiny_model, tokenizer, examples)
    lines: list[str] = []
    relearn(tiny_model, tokenizer, examples, settings, SEED, log=lines.append)
    assert f"step {settings['steps']} " in lines[-1]  # 7 updates over passes of 3 or fewer
    assert forget_loss(tiny_model, tokenizer, examples) < before


def test_attack_step_writes_a_folder_that_records_what_made_it(
    tmp_path: Path, data_root: Path, tokenizer: Any, tiny_model: Any
) -> None:
    source = tmp_path / "model"
    save_model(tiny_model, tokenizer, source, {"seed": SEED})
    quantized, relearned = tmp_path / "int4", tmp_path / "relearn"
    common = {"benchmark": "muse_news", "data": data_root / "muse_news", "seed": SEED}
    attack_step(
        attack="quantize_int4",
        model_dir=source,
        out=quantized,
        settings={"kind": "quantize", "bits": 4, "group_size": 16, "backend": "rtn"},
        precision="float32",
        **common,
    )
    attack_step(
        attack="relearn_s3",
        model_dir=source,
        out=relearned,
        settings={"kind": "relearn", **SETTINGS, "steps": 3},
        precision="float32",
        **common,
    )
    model = load_model(quantized)
    q_proj = model.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(
        q_proj, quantize_weight(tiny_model.model.layers[0].self_attn.q_proj.weight, 4, 16)
    )
    record = json.loads((relearned / "provenance.json").read_text())
    assert record["attack"] == "relearn_s3" and record["examples"] == 6
    assert len(record["losses"]) >= 1
    assert any(path.endswith("raw/forget.jsonl") for path in record["inputs"])
    assert len(record["attacked_sha256"]["model.safetensors"]) == 64
