"""Two CPU processes under DDP (gloo) give the weights one process gets with the same global batch.

Both gradients are averaged across processes before the rule combines them, so the inner
products are those of the global batch and are not summed twice.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from unlearn_fixtures import tiny_model, unlearner
from workflow_helpers import run_two_gloo_processes

TESTS = Path(__file__).resolve().parents[1]  # the workers and their fixtures

pytestmark = pytest.mark.workflow  # several processes: not in `make test-fast`


def run_two_processes(
    out: Path,
    global_batch: int,
    forget_examples: int,
    overrides: dict | None = None,
    settings: dict | None = None,
) -> None:
    extra = [json.dumps(overrides or {}), json.dumps(settings or {})]
    result = run_two_gloo_processes(
        TESTS / "unlearn_ddp_worker.py", str(out), str(global_batch), str(forget_examples), *extra
    )
    assert result.returncode == 0, result.stderr[-4000:]


# 8 examples in global batches of 4: full steps; 7 in batches of 4: the second step has 3
# examples, 2 on one process and 1 on the other (weighted by count); 5 in batches of 4: the
# last batch has 1 example and the second process a weight-0 slot.
@pytest.mark.parametrize("forget_examples", [8, 7, 5])
def test_two_ddp_processes_equal_one_process_accumulating_the_same_global_batch(
    tmp_path: Path, forget_examples: int
) -> None:
    """4 BLUR-NPO steps (2 epochs): weights and logged gradient statistics agree to float32
    rounding (rtol 1e-5): the same sums in a different order."""
    run_two_processes(tmp_path / "ddp", 4, forget_examples)
    single = unlearner(
        "blur_npo",
        tmp_path / "single",
        epochs=2,
        batch_size=4,
        micro_batch_size=2,
        forget_examples=forget_examples,
    )
    assert (single.layout.processes, single.layout.grad_accum) == (1, 2)
    single.run()
    ddp = load_file(tmp_path / "ddp" / "epoch_2" / "model.safetensors")
    one = load_file(tmp_path / "single" / "epoch_2" / "model.safetensors")
    assert ddp.keys() == one.keys()
    for key, value in one.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)
    initial = tiny_model().state_dict()
    assert any(not torch.equal(one[k], initial[k]) for k in one), "the step moved nothing"
    logged = [json.loads(line) for line in (tmp_path / "ddp" / "train_log.jsonl").open()]
    assert len(logged) == len(single.records) == 4
    for entry, record in zip(logged, single.records, strict=True):
        assert (entry["processes"], entry["grad_accum"], entry["global_batch"]) == (2, 1, 4)
        for key in ("forget_sq", "retain_sq", "inner", "forget_loss", "retain_loss"):
            assert entry[key] == pytest.approx(record.values[key], rel=1e-4, abs=1e-9), key


@pytest.mark.parametrize(
    "baldro",
    [{"baldro": "dv", "beta_dv": 0.5}, {"baldro": "group", "sampling_ratio": 0.5}],
    ids=["dv", "group"],
)
def test_baldro_under_ddp_equals_one_process_with_the_same_micro_batches(
    tmp_path: Path, baldro: dict
) -> None:
    """BalDRO reweights within a micro-batch: 2 processes x micro-batch 2 and 1 process
    accumulating 2 micro-batches of 2 see the same micro-batches, so the same updates. (With
    another split the result differs: the reweighting is per micro-batch, see baldro.py.)"""
    run_two_processes(tmp_path / "ddp", 4, 8, baldro)
    single = unlearner(
        "blur_npo", tmp_path / "single", epochs=2, batch_size=4, micro_batch_size=2,
        overrides=baldro,
    )  # fmt: skip
    single.run()
    ddp = load_file(tmp_path / "ddp" / "epoch_2" / "model.safetensors")
    one = load_file(tmp_path / "single" / "epoch_2" / "model.safetensors")
    for key, value in one.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)


def test_the_learning_rate_schedule_steps_once_per_optimizer_step_under_ddp(tmp_path: Path) -> None:
    """accelerate's prepared scheduler steps once per process: with 2 processes a linear
    schedule reached 0 half-way. The rate of each step must be one process's."""
    run_two_processes(tmp_path / "ddp", 4, 8, settings={"schedule": "linear"})
    single = unlearner("blur_npo", tmp_path / "single", epochs=2, batch_size=4, schedule="linear")
    single.run()
    logged = [json.loads(line) for line in (tmp_path / "ddp" / "train_log.jsonl").open()]
    rates = [entry["learning_rate"] for entry in logged]
    assert rates == pytest.approx([r.values["learning_rate"] for r in single.records])
    assert rates == pytest.approx([1e-3 * (1 - k / 4) for k in range(4)])


def test_rmu_training_all_it_reaches_runs_under_ddp_as_in_one_process(tmp_path: Path) -> None:
    """TOFU's RMU (`trainable: all`, open-unlearning) steers layer 0 of 3: the later layers,
    the final norm and the output layer get no gradient. DDP stopped on them ("parameters that
    were not used in producing loss"); frozen, the run equals one process's, and they keep
    their start values in both."""
    rmu = {"forget_loss": "rmu", "retain_loss": "rmu", "rule": "weighted_sum", "gamma": 100.0}
    rmu |= {"layers": [0], "steering_coefficient": 6.5, "trainable": "all"}
    run_two_processes(tmp_path / "ddp", 4, 8, rmu)
    single = unlearner("blur_npo", tmp_path / "single", epochs=2, batch_size=4, overrides=rmu)
    single.run()
    ddp = load_file(tmp_path / "ddp" / "epoch_2" / "model.safetensors")
    one = load_file(tmp_path / "single" / "epoch_2" / "model.safetensors")
    start = tiny_model().state_dict()
    for key, value in one.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6)
        reached = key.startswith(("model.embed_tokens", "model.layers.0."))
        assert torch.equal(value, start[key]) != reached, key  # moved exactly where reached
