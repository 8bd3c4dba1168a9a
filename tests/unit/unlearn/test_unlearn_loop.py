"""The unlearning loop: accumulation, resume, NaN guard, every method lowering its forget loss."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from unlearn_fixtures import method, unlearner, weights

from bilevel_unlearning.unlearn.checkpoints import (
    FINGERPRINT_FILE,
    LOG_FILE,
    checkpoint_folder,
    epoch_folder,
)
from bilevel_unlearning.unlearn.loop import NonFiniteError


@pytest.mark.parametrize("name", ["ga_gdr", "blur_npo", "npo_klr"])
def test_accumulating_four_micro_batches_equals_one_batch_of_four(
    tmp_path: Path, name: str
) -> None:
    """g_F and g_R are each accumulated over the micro-batches before the rule combines them."""
    whole = unlearner(name, tmp_path / "whole", batch_size=4)
    split = unlearner(name, tmp_path / "split", batch_size=4, micro_batch_size=1)
    assert (whole.layout.grad_accum, split.layout.grad_accum) == (1, 4)
    whole.run()
    split.run()
    assert len(whole.records) == len(split.records) == 2
    for key, value in weights(whole).items():
        torch.testing.assert_close(weights(split)[key], value, rtol=1e-5, atol=1e-6)
    for a, b in zip(whole.records, split.records, strict=True):
        assert a.values["forget_sq"] == pytest.approx(b.values["forget_sq"], rel=1e-4)
        assert a.values["inner"] == pytest.approx(b.values["inner"], rel=1e-4, abs=1e-9)


class Interrupted(Exception):
    pass


def run_until_epoch_1(name: str, out: Path, epochs: int, **settings) -> None:
    """Start a run and kill it right after its first checkpoint, as a job time limit would."""
    first = unlearner(name, out, epochs=epochs, **settings)
    checkpoint = first._checkpoint

    def stop_after_epoch_1(epoch: int) -> None:
        checkpoint(epoch)
        raise Interrupted

    first._checkpoint = stop_after_epoch_1
    with pytest.raises(Interrupted):
        first.run()


def test_resume_after_an_interruption_gives_bitwise_equal_weights(tmp_path: Path) -> None:
    straight = unlearner("blur_npo", tmp_path / "straight", epochs=3)
    straight.run()

    run_until_epoch_1("blur_npo", tmp_path / "resumed", epochs=3)
    # interrupted: the first checkpoint is kept, nothing is published yet
    assert checkpoint_folder(tmp_path / "resumed", 1).is_dir()
    assert not checkpoint_folder(tmp_path / "resumed", 2).exists()
    assert not epoch_folder(tmp_path / "resumed", 1).exists()

    resumed = unlearner("blur_npo", tmp_path / "resumed", epochs=3)
    resumed.run()
    for key, value in weights(straight).items():
        assert torch.equal(weights(resumed)[key], value), key
    log_straight = (tmp_path / "straight" / LOG_FILE).read_text().splitlines()
    log_resumed = (tmp_path / "resumed" / LOG_FILE).read_text().splitlines()
    assert len(log_straight) == len(log_resumed) == 6
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "tokens_per_s"}  # noqa: E731
    assert [strip(x) for x in log_straight] == [strip(x) for x in log_resumed]


@pytest.mark.parametrize(
    "change",
    [
        {"overrides": {"gamma": 2.0}},
        {"overrides": {"gamma": float("nan")}},
        {"learning_rate": 2e-3},
        {"seed": 1},
    ],
    ids=["gamma", "gamma-nan", "learning-rate", "seed"],
)
def test_a_checkpoint_made_with_other_settings_is_discarded_not_resumed(
    tmp_path: Path, change: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """The reviewer's case: a finished epoch of gamma 1, rerun with gamma 2, must not resume
    from gamma 1's weights; the rerun equals a run that starts from scratch with gamma 2."""
    run_until_epoch_1("blur_npo", tmp_path / "rerun", epochs=2)
    fresh = unlearner("blur_npo", tmp_path / "fresh", epochs=2, **change)
    rerun = unlearner("blur_npo", tmp_path / "rerun", epochs=2, **change)
    if math.isnan(change.get("overrides", {}).get("gamma", 0.0)):
        with pytest.raises(NonFiniteError):
            rerun.run()
        assert not checkpoint_folder(tmp_path / "rerun", 1).exists()  # gamma 1's is gone
        return
    fresh.run()
    with caplog.at_level("WARNING"):
        rerun.run()
    assert "not resuming" in caplog.text and "made with different" in caplog.text
    assert len(rerun.records) == len(fresh.records) == 4  # trained from the start model
    for key, value in weights(fresh).items():
        assert torch.equal(weights(rerun)[key], value), key


def test_a_checkpoint_without_a_fingerprint_is_not_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_until_epoch_1("ga_gdr", tmp_path / "old", epochs=2)
    (checkpoint_folder(tmp_path / "old", 1) / FINGERPRINT_FILE).unlink()  # as the old loop left
    with caplog.at_level("WARNING"):
        unlearner("ga_gdr", tmp_path / "old", epochs=2).run()
    assert "no fingerprint" in caplog.text


def test_non_finite_loss_stops_before_the_update_and_writes_no_checkpoint(tmp_path: Path) -> None:
    run = unlearner("ga_gdr", tmp_path / "nan")
    model = run.accelerator.unwrap_model(run.model)
    with torch.no_grad():
        model.model.embed_tokens.weight[5] = float("nan")
    before = weights(run)
    with pytest.raises(NonFiniteError, match="forget loss"):
        run.run()
    assert not epoch_folder(tmp_path / "nan", 1).exists()
    after = weights(run)
    assert all(torch.equal(after[k], v) or torch.isnan(v).any() for k, v in before.items())


@pytest.mark.parametrize(
    "name",
    [
        *("ga", "ga_gdr", "npo", "npo_klr", "simnpo", "blur_npo", "blur_reversed"),
        *("rmu", "blur_rmu", "task_vector", "whp"),
    ],
)
def test_every_method_lowers_its_forget_loss(tmp_path: Path, name: str) -> None:
    run = unlearner(name, tmp_path / name, topics=2 if "rmu" in name else 1, epochs=4)
    records = run.run()
    losses = [r.values["forget_loss"] for r in records]
    assert losses[-1] < losses[0], losses
    assert all(k in records[0].values for k in ("forget_sq", "learning_rate", "tokens_per_s"))
    if "retain_loss" in method(name):
        assert {"retain_sq", "inner", "cosine"} <= set(records[0].values)


def test_rmu_trains_only_the_chosen_down_projections(tmp_path: Path) -> None:
    run = unlearner("rmu", tmp_path / "rmu", topics=2)
    model = run.accelerator.unwrap_model(run.model)
    before = weights(run)
    run.run()
    after = weights(run)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)}
    assert sum(p.requires_grad for p in model.parameters()) == 2


def test_non_finite_gradient_with_a_finite_loss_also_stops_the_run(tmp_path: Path) -> None:
    run = unlearner("blur_npo", tmp_path / "nan_grad")
    model = run.accelerator.unwrap_model(run.model)
    model.lm_head.weight.register_hook(lambda grad: grad * float("nan"))
    before = weights(run)
    with pytest.raises(NonFiniteError, match="gradient statistic forget_sq"):
        run.run()
    assert not epoch_folder(tmp_path / "nan_grad", 1).exists()
    assert all(torch.equal(weights(run)[k], v) for k, v in before.items())


def test_task_vector_publishes_the_negated_change_and_resumes(tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from unlearn_fixtures import tiny_model

    straight = unlearner("task_vector", tmp_path / "straight", epochs=2)
    straight.run()
    start = tiny_model().state_dict()
    state = checkpoint_folder(tmp_path / "straight", 2) / "trainer_state.pt"  # the last one kept
    trained = torch.load(state, weights_only=False)["weights"]
    published = load_file(epoch_folder(tmp_path / "straight", 2) / "model.safetensors")
    for key, value in published.items():
        expected = start[key] - 5.0 * (trained[key] - start[key])
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
    assert any(not torch.equal(trained[k], start[k]) for k in published)

    run_until_epoch_1("task_vector", tmp_path / "resumed", epochs=2)
    unlearner("task_vector", tmp_path / "resumed", epochs=2).run()
    a = load_file(epoch_folder(tmp_path / "straight", 2) / "model.safetensors")
    b = load_file(epoch_folder(tmp_path / "resumed", 2) / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_only_the_last_training_state_is_kept_and_published_epochs_hold_weights_only(
    tmp_path: Path,
) -> None:
    """A 7B run's optimizer state is ~40 GB an epoch: earlier ones are deleted once the next
    checkpoint is complete; the published folders are plain model folders."""
    unlearner("blur_npo", tmp_path, epochs=3).run()
    states = [(checkpoint_folder(tmp_path, e) / "trainer_state.pt").is_file() for e in (1, 2, 3)]
    assert states == [False, False, True]
    for epoch in (1, 2, 3):
        published = {p.name for p in epoch_folder(tmp_path, epoch).iterdir()}
        assert "model.safetensors" in published and "config.json" in published
        assert not published & {"trainer_state.pt", "fingerprint.json", "training_state"}


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    """Activations recomputed in the backward pass: the same gradients to float32 rounding."""
    from unlearn_fixtures import examples, tiny_model

    from bilevel_unlearning.models.encoding import collate
    from bilevel_unlearning.models.hf import enable_activation_checkpointing

    batch = collate(examples(4, seed=3), pad_id=0)
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            enable_activation_checkpointing(model)
            assert model.is_activation_checkpointing
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7)


def test_mixed_precision_keeps_fp32_master_weights_and_publishes_bf16(tmp_path: Path) -> None:
    """precision mixed: the trained weights and AdamW moments stay float32 (a 1e-3 step moves
    them), the forward passes compute in bfloat16, the published folder holds bfloat16."""
    from safetensors.torch import load_file

    run = unlearner(
        "blur_npo", tmp_path, epochs=1, autocast_dtype="bfloat16", publish_dtype="bfloat16"
    )
    run.run()
    model = run.accelerator.unwrap_model(run.model)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    moments = [s["exp_avg"] for s in run.optimizer.state.values()]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    published = load_file(epoch_folder(tmp_path, 1) / "model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in published.values())
    kept = torch.load(checkpoint_folder(tmp_path, 1) / "trainer_state.pt", weights_only=False)
    assert all(v.dtype == torch.float32 for v in kept["weights"].values())  # resume from fp32


def test_a_checkpoint_of_other_training_code_is_not_resumed(tmp_path) -> None:
    """The run's fingerprint holds a digest of the training path's code: a changed loss makes
    it differ (so an old checkpoint is discarded, not continued), a changed report does not."""
    import shutil

    import bilevel_unlearning
    from bilevel_unlearning.unlearn.run import training_code_digest

    package = Path(bilevel_unlearning.__file__).parent
    copy = tmp_path / "package"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = training_code_digest(copy)
    assert before == training_code_digest(package)
    (copy / "report" / "tables.py").write_text("# another report\n")
    assert training_code_digest(copy) == before
    losses = copy / "unlearn" / "losses.py"
    losses.write_text(losses.read_text().replace("-(2/b)", "-(3/b)", 1))
    assert training_code_digest(copy) != before


def test_training_state_every_k_epochs_resumes_from_the_last_one_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """state_every 2 over 3 epochs: the optimizer state (~81 GB of DCP for a 7B model) is
    written after epochs 2 and 3 only; every epoch's weights are saved; a run killed after
    epoch 1 has nothing to resume from and starts over, and ends bit for bit as a run that
    keeps every state."""
    saved: list[str] = []
    real_save = torch.save

    def counting_save(obj: object, path: object, *args: object, **kwargs: object) -> None:
        saved.append(Path(str(path)).parent.name.strip(".").removesuffix(".partial"))
        real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", counting_save)
    every = unlearner("npo_gdr", tmp_path / "every", epochs=3)
    every.run()
    assert saved == ["epoch_1", "epoch_2", "epoch_3"]
    saved.clear()
    sparse = unlearner("npo_gdr", tmp_path / "sparse", epochs=3, state_every=2)
    sparse.run()
    assert saved == ["epoch_2", "epoch_3"]
    assert all(epoch_folder(tmp_path / "sparse", e).is_dir() for e in (1, 2, 3))
    for key, value in weights(every).items():
        assert torch.equal(weights(sparse)[key], value), key

    run_until_epoch_1("npo_gdr", tmp_path / "killed", epochs=3, state_every=2)
    assert not (checkpoint_folder(tmp_path / "killed", 1) / "trainer_state.pt").exists()
    again = unlearner("npo_gdr", tmp_path / "killed", epochs=3, state_every=2)
    again.run()
    for key, value in weights(every).items():
        assert torch.equal(weights(again)[key], value), key
