"""Every tensor of a training step and an evaluation batch sits on the compute device.

The model is placed on the `meta` device (the stand-in for a GPU that a CPU build has) and
each step runs under DeviceGuard, which fails on any operation that mixes devices: a batch,
frozen reference, reinforced model or control vector left on the CPU would be caught. The
last test checks the guard itself by undoing the loop's batch placement.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from device_guard import DeviceGuard, DeviceMixError
from unlearn_fixtures import data, examples, method, tiny_model

from bilevel_unlearning.evaluation.generation import greedy_generate
from bilevel_unlearning.evaluation.likelihood import labelled_logprobs
from bilevel_unlearning.models.hf import tiny_llama
from bilevel_unlearning.models.train import train_causal_lm
from bilevel_unlearning.unlearn import loop as loop_module
from bilevel_unlearning.unlearn.loop import LoopSettings, Unlearner
from bilevel_unlearning.unlearn.objectives import Objective

META = torch.device("meta")
METHODS = [
    "ga",
    "ga_gdr",
    "npo",
    "npo_klr",
    "simnpo",
    "blur_npo",
    "blur_reversed",
    "task_vector",
    "whp",
    "rmu",
    "blur_rmu",
]


def meta_unlearner(name: str, out: Path) -> Unlearner:
    """An Unlearner whose model, frozen models and batches all belong on the meta device,
    built on the CPU as the unlearn job builds it (the loop does the placing)."""
    from accelerate import Accelerator

    model = tiny_model()
    config = method(name)
    reinforced = tiny_model(seed=1) if config["forget_loss"] == "whp" else None
    objective = Objective(config, copy.deepcopy(model), reinforced)
    settings = LoopSettings(epochs=1, learning_rate=1e-3, batch_size=4, micro_batch_size=2)
    topics = 2 if config["forget_loss"] == "rmu" else 1
    return Unlearner(
        model,
        objective,
        data(topics),
        settings,
        out,
        accelerator=Accelerator(cpu=True),
        device=META,
    )


@pytest.mark.parametrize("name", METHODS)
def test_one_unlearning_step_keeps_every_tensor_on_the_compute_device(
    name: str, tmp_path: Path
) -> None:
    unlearner = meta_unlearner(name, tmp_path)
    assert all(p.is_meta for p in unlearner.model.parameters())
    # the parameters that move are the moved model's own: RMU's chosen down_proj weights only
    assert all(p.is_meta and p.requires_grad for p in unlearner.params)
    rmu = unlearner.objective.forget == "rmu"
    count = len(unlearner.objective.rmu_layers(unlearner.model)) if rmu else None
    assert len(unlearner.params) == (count or len(list(unlearner.model.parameters())))
    with DeviceGuard() as guard:
        group = unlearner._epoch_steps(1)[0]
        assert len(group) == 2, "micro-batch 2 of a global batch 4: two accumulation steps"
        unlearner._step(group, epoch=1, step=1)
    # the batches are built on the CPU and moved: no operation mixed the two (else it raised)
    assert "meta" in guard.devices and guard.operations > 100


def test_evaluation_batches_and_fine_tuning_keep_every_tensor_on_the_model_device() -> None:
    model = tiny_model().to(META)
    batch = examples(3, seed=5)
    with DeviceGuard() as guard:
        labelled_logprobs(model, batch, pad_id=0, batch_size=2)
        train_causal_lm(model, batch, pad_id=0, epochs=1, learning_rate=1e-3, batch_size=2, seed=0)
    assert "meta" in guard.devices


def test_generation_keeps_every_tensor_on_the_model_device(tokenizer: Any) -> None:
    size = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
    architecture = {**size, "num_hidden_layers": 2, "max_position_embeddings": 64}
    model = tiny_llama(architecture, tokenizer, seed=0).to(META).eval()
    with DeviceGuard() as guard:
        greedy_generate(model, tokenizer, ["the first prompt", "another"], 4)
    assert "meta" in guard.devices


def test_the_guard_catches_a_batch_left_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the loop did before it placed batches: the first forward pass mixes devices."""
    unlearner = meta_unlearner("blur_npo", tmp_path)
    monkeypatch.setattr(loop_module.MicroBatch, "to", lambda micro, device: micro)
    with pytest.raises(DeviceMixError, match="meta"), DeviceGuard():
        unlearner._step(unlearner._epoch_steps(1)[0], epoch=1, step=1)
