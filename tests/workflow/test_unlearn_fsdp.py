"""FSDP2 on the CPU: 2 gloo processes call fully_shard directly (accelerate enters FSDP only on
GPUs). Parameters, gradients and optimizer state are sharded; the rule works on the local
gradient shards and sums its inner products over the processes.

Equality with one unsharded process on the same global batch is to float32 rounding (rtol 1e-5,
atol 5e-6 on weights of size ~0.02): the same sums, reduced in a different order; AdamW's first
steps divide by the root of tiny second moments, which magnifies that rounding in a few
elements (WHP: 1 of 2048 by 2.4e-6).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from unlearn_fixtures import tiny_model, unlearner
from workflow_helpers import run_two_gloo_processes

from bilevel_unlearning.unlearn.checkpoints import checkpoint_folder, epoch_folder

TESTS = Path(__file__).resolve().parents[1]  # the workers and their fixtures

pytestmark = pytest.mark.workflow  # several processes: not in `make test-fast`


def run_fsdp(name: str, out: Path, epochs: int, stop_after: int | None = None) -> int:
    extra = [str(stop_after)] if stop_after is not None else []
    done = run_two_gloo_processes(TESTS / "fsdp_worker.py", name, str(out), str(epochs), *extra)
    if stop_after is None:
        assert done.returncode == 0, done.stderr[-4000:]
    return done.returncode


def published(out: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(epoch_folder(out, epoch) / "model.safetensors")


@pytest.mark.parametrize(
    "name", ["blur_npo", "blur_npo+clip", "npo_gdr", "rmu", "task_vector", "whp"]
)
def test_fsdp_over_two_processes_equals_one_process_with_the_global_batch(
    tmp_path: Path, name: str
) -> None:
    run_fsdp(name, tmp_path / "fsdp", epochs=2)
    method, _, variant = name.partition("+")  # +clip: clipped to a norm every step exceeds
    clip = {"clip_norm": 0.01} if variant == "clip" else {}
    topics = 2 if method == "rmu" else 1
    single = unlearner(method, tmp_path / "single", topics=topics, epochs=2, batch_size=4, **clip)
    single.run()
    sharded, one = published(tmp_path / "fsdp", 2), published(tmp_path / "single", 2)
    assert sharded.keys() == one.keys()
    for key, value in one.items():
        torch.testing.assert_close(sharded[key], value, rtol=1e-5, atol=5e-6)
    start = tiny_model().state_dict()
    assert any(not torch.equal(one[k], start[k]) for k in one), "nothing moved"
    logged = [json.loads(line) for line in (tmp_path / "fsdp" / "train_log.jsonl").open()]
    assert len(logged) == len(single.records)
    keys = ["forget_sq", "forget_loss"]
    keys += ["retain_sq", "inner", "retain_loss"] if "retain_loss" in logged[0] else []
    for entry, record in zip(logged, single.records, strict=True):
        assert entry["processes"] == 2
        for key in keys:
            assert entry[key] == pytest.approx(record.values[key], rel=1e-4, abs=1e-9), key


def test_an_interrupted_fsdp_run_resumes_from_its_sharded_state(tmp_path: Path) -> None:
    run_fsdp("blur_npo", tmp_path / "straight", epochs=3)
    assert run_fsdp("blur_npo", tmp_path / "resumed", epochs=3, stop_after=1) != 0
    state = checkpoint_folder(tmp_path / "resumed", 1) / "training_state"
    assert state.is_dir() and any(state.iterdir())  # each process's shards (DCP)
    assert not epoch_folder(tmp_path / "resumed", 1).exists()
    run_fsdp("blur_npo", tmp_path / "resumed", epochs=3)
    a, b = published(tmp_path / "straight", 3), published(tmp_path / "resumed", 3)
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=1e-6, atol=1e-7)


def test_an_fsdp_checkpoint_is_not_resumed_by_one_process_but_started_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job rerun on one GPU after an FSDP run was interrupted: the sharded training state
    cannot load into one process (it raised KeyError 'optimizer'); the run starts over, says
    why, and ends as a one-process run does."""
    assert run_fsdp("npo_gdr", tmp_path / "run", epochs=2, stop_after=1) != 0
    assert (checkpoint_folder(tmp_path / "run", 1) / "training_state").is_dir()
    with caplog.at_level("WARNING"):
        unlearner("npo_gdr", tmp_path / "run", epochs=2, batch_size=4).run()
    assert "different training_state" in caplog.text
    unlearner("npo_gdr", tmp_path / "single", epochs=2, batch_size=4).run()
    a, b = published(tmp_path / "single", 2), published(tmp_path / "run", 2)
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, rtol=0, atol=0)


def test_the_published_fsdp_epoch_is_a_plain_hugging_face_folder(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    run_fsdp("npo_gdr", tmp_path / "fsdp", epochs=1)
    model = AutoModelForCausalLM.from_pretrained(epoch_folder(tmp_path / "fsdp", 1))
    reference = tiny_model()
    assert model.config.hidden_size == reference.config.hidden_size
    weights = published(tmp_path / "fsdp", 1)
    assert all(not hasattr(v, "to_local") for v in weights.values())  # full tensors


def test_whps_reinforced_model_splits_each_batch_over_the_processes(tmp_path: Path) -> None:
    """Sharded, the reinforced model trains with each process on half of every batch and
    reaches the weights one process reaches on the whole batch (equal-length examples: the
    mean of the halves' means is the batch mean); under `precision: mixed` it computes in bf16
    like the trained model (the job's mixed-precision policy)."""
    from unlearn_fixtures import data, method

    from bilevel_unlearning.unlearn.run import reinforced_model

    done = run_two_gloo_processes(TESTS / "reinforce_worker.py", str(tmp_path))
    assert done.returncode == 0, done.stderr[-4000:]
    settings = {"learning_rate": 1e-3, "batch_size": 4}
    single = reinforced_model(tiny_model(), data(forget_examples=8), method("whp"), settings, 0)
    sharded = load_file(tmp_path / "reinforced.safetensors")
    start = tiny_model().state_dict()
    for key, value in single.state_dict().items():
        torch.testing.assert_close(sharded[key], value, rtol=1e-5, atol=5e-6)
    assert any(not torch.equal(single.state_dict()[k], start[k]) for k in start), "nothing moved"
    record = json.loads((tmp_path / "mixed.json").read_text())
    assert record["logits_dtype"] == "torch.bfloat16"
    # 8 examples, batch 4, 2 epochs: 4 passes of 2 sequences each (half of every batch)
    assert record["rows_per_pass"] == [2, 2, 2, 2]


def test_sharded_start_models_are_read_by_process_0_only(tmp_path: Path) -> None:
    """Under FSDP only process 0 reads the start model; the others build theirs empty and
    receive their shards by broadcast (host memory: one model per node, not three per
    process). Process 1 gets a folder without weights, so reading them fails; every copy
    equals the model loaded whole: the trained model and WHP's copy in fp32, the reference in
    bf16 (floating buffers too, as casting the loaded model does)."""
    import shutil

    from bilevel_unlearning.data.rehearsal_models import write_model_repo
    from bilevel_unlearning.models.hf import load_model

    full = write_model_repo(tmp_path / "hub", "meta-llama/Llama-2-7b-hf", ["a few words"] * 8, 0)
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(full / "config.json", config_only / "config.json")
    out = tmp_path / "out"
    out.mkdir()
    done = run_two_gloo_processes(
        TESTS / "start_models_worker.py", str(full), str(config_only), str(out)
    )
    assert done.returncode == 0, done.stderr[-4000:]
    record = json.loads((out / "record.json").read_text())
    tokens = torch.tensor([[1, 5, 9, 30, 2, 7]])
    for name, dtype in (
        ("model", torch.float32),
        ("reference", torch.bfloat16),
        ("reinforced", torch.float32),
    ):
        whole = load_model(full, "float32", "cpu").to(dtype)
        weights = load_file(out / f"{name}.safetensors")
        assert weights.keys() == whole.state_dict().keys()
        for key, value in whole.state_dict().items():
            assert torch.equal(weights[key], value), (name, key)
        assert record[name]["dtypes"] == [str(dtype)]
        assert set(record[name]["buffers"].values()) == {str(dtype)}
        assert record[name]["checkpointing"] == (name != "reference")
        with torch.no_grad():
            expected = whole(tokens).logits.float()
        # mixed precision's policy computes the fp32 copies in bf16: close, not equal
        torch.testing.assert_close(
            torch.load(out / f"{name}_logits.pt"), expected, rtol=0.05, atol=0.05
        )
