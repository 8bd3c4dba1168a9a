"""GPU plan: parameter counts of the paper's models, how memory components scale, one case
computed by hand, and the table."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import REPO, shipped_config

from bilevel_unlearning import plan
from bilevel_unlearning.cli import main

NPO = {"forget_loss": "npo", "beta": 0.1}
GA = {"forget_loss": "ga"}
BLUR_GA = {"forget_loss": "ga", "retain_loss": "nll", "rule": "blur", "gamma": 1.0}
GA_GDR = {"forget_loss": "ga", "retain_loss": "nll", "rule": "weighted_sum", "gamma": 1.0}
BLUR_NPO = {"forget_loss": "npo", "retain_loss": "nll", "rule": "blur", "gamma": 1.0}
RMU = {"forget_loss": "rmu", "retain_loss": "rmu", "rule": "weighted_sum", "layers": [5, 6, 7]}


def job(**overrides: object) -> dict:
    base = {
        "name": "muse_news/blur_npo",
        "model": "llama-2-7b",
        "precision": "bfloat16",
        "gpus": 4,
        "strategy": "ddp",
        "batch": 8,
        "seq_len": 2048,
        "steps": 100,
        "method": BLUR_NPO,
    }
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("model", "known"),
    [
        ("llama-2-7b", 6.74e9),
        ("HuggingFaceH4/zephyr-7b-beta", 7.24e9),
        ("open-unlearning/tofu_Llama-3.2-1B-Instruct_full", 1.24e9),
    ],
)
def test_preset_parameter_counts_match_the_published_totals(model: str, known: float) -> None:
    assert plan.resolve_architecture(model).params() == pytest.approx(known, rel=0.01)


@pytest.mark.parametrize("preset", sorted(plan.PRESETS))
def test_preset_counts_equal_the_transformers_model(preset: str) -> None:
    """The same architecture built by transformers on the meta device (no memory, no weights)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    a = plan.PRESETS[preset]
    config = LlamaConfig(
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        vocab_size=a.vocab,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        tie_word_embeddings=a.tied_embeddings,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == a.params()


def test_a_model_folder_is_read_from_its_config(tmp_path: Path) -> None:
    config = {
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "vocab_size": 128256,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert plan.resolve_architecture(str(tmp_path)) == replace(
        plan.PRESETS["llama-3.2-1b"], head_dim=64
    )
    assert plan.resolve_architecture(str(tmp_path)).params() == 1_235_814_400
    with pytest.raises(ValueError, match="unknown model"):
        plan.resolve_architecture("gpt-2")


SHARDED = ("weights", "frozen", "grads", "extra", "optimizer")


def test_fsdp_divides_the_sharded_parts_by_the_gpu_count() -> None:
    ddp = plan.estimate(job(strategy="ddp"))
    fsdp = plan.estimate(job(strategy="fsdp"))
    for part in SHARDED:
        assert getattr(fsdp, part) == pytest.approx(getattr(ddp, part) / 4)
    assert fsdp.activations == ddp.activations
    assert fsdp.seconds == ddp.seconds


def test_a_retain_loss_adds_exactly_one_gradient_copy() -> None:
    ga, blur, weighted = (plan.estimate(job(method=m)) for m in (GA, BLUR_GA, GA_GDR))
    assert blur.extra == blur.grads > 0 and ga.extra == 0
    assert blur.total - ga.total == pytest.approx(blur.grads)
    assert weighted.total == blur.total  # both rules keep g_F beside .grad


def test_bfloat16_halves_weights_and_gradients_of_float32() -> None:
    fp32 = plan.estimate(job(precision="float32"))
    bf16 = plan.estimate(job(precision="bfloat16"))
    assert fp32.weights == 2 * bf16.weights == 4 * 6_738_415_616  # ddp: a whole copy
    assert fp32.grads == 2 * bf16.grads
    assert fp32.optimizer == bf16.optimizer  # float32 moments either way
    # mixed: the model itself is the fp32 master copy (gradients fp32 too), the frozen
    # reference in bf16, the compute in bf16
    mixed = plan.estimate(job(precision="mixed"))
    assert (mixed.weights, mixed.grads, mixed.optimizer) == (
        fp32.weights,
        fp32.grads,
        fp32.optimizer,
    )
    assert mixed.frozen == bf16.frozen


def test_rmu_trains_three_down_projections_beside_a_frozen_copy() -> None:
    rmu = plan.estimate(job(model="zephyr-7b-beta", method=RMU, gpus=1))
    architecture = plan.PRESETS["mistral-7b"]
    trainable = 3 * architecture.hidden * architecture.intermediate
    assert rmu.grads == trainable * 2 and rmu.extra == rmu.grads
    assert rmu.frozen == rmu.weights
    assert rmu.optimizer == trainable * 8


def test_gradient_checkpointing_keeps_only_layer_inputs() -> None:
    full = plan.estimate(job(gradient_checkpointing=False))
    checkpointed = plan.estimate(job(gradient_checkpointing=True))
    assert checkpointed.activations < full.activations / 5


TINY = {
    "hidden_size": 4,
    "intermediate_size": 8,
    "num_hidden_layers": 2,
    "vocab_size": 10,
    "num_attention_heads": 2,
}


def test_a_small_case_computed_by_hand() -> None:
    architecture = plan.resolve_architecture(TINY)
    # layer: q,k,v,o 4x4 each = 64, gate/up/down 4x8 each = 96, two norms 8 -> 168
    assert architecture.layer_params() == 168
    assert architecture.params() == 40 + 2 * 168 + 4 + 40  # embeddings, layers, norm, head
    tiny = {
        "name": "tiny",
        "model": TINY,
        "precision": "float32",
        "gpus": 1,
        "batch": 2,
        "seq_len": 3,
        "steps": 10,
        "method": BLUR_NPO,
        "mfu": 0.5,
    }
    e = plan.estimate(tiny)
    assert (e.weights, e.frozen, e.grads, e.extra) == (1680, 1680, 1680, 1680)  # 420 x 4 B
    assert e.optimizer == 420 * 2 * 4
    # activations: 2x3 tokens x 4 hidden x 34 B x 2 (fp32) per layer x 2 layers = 3264;
    # logits 2x3x10 x (4 + 8) = 720; the reference's logits 60 x 4 = 240
    assert e.activations == 3264 + 720 + 240
    assert e.total == 4 * 1680 + 3360 + 4224
    # 60 tokens x 376 matmul params x (6 x 2 trained batches + 2 x 1 reference forward), plus
    # 120 s start-up, reading 420 x 4 B at 2 GB/s, writing one epoch (1680 B) and one state
    # (1680 B + 420 x 8 B of moments) at 1 GB/s
    compute = 60 * 376 * 14 / (67e12 * 0.5)
    overheads = 120 + 1680 / 2e9 + (1680 + 1680 + 3360) / 1e9
    assert e.seconds == pytest.approx(compute + overheads)
    halved = plan.estimate({**tiny, "gpus": 2, "micro_batch": 2}).seconds
    assert halved == pytest.approx(compute / 2 + overheads)
    # gradient checkpointing recomputes the forward: 8 instead of 6 per trained batch; three
    # epochs with a state every 2 write the weights 3 times and the state twice (epochs 2, 3)
    recomputed = plan.estimate({**tiny, "gradient_checkpointing": True}).seconds
    assert recomputed == pytest.approx(60 * 376 * 18 / (67e12 * 0.5) + overheads)
    sparse = plan.estimate({**tiny, "epochs": 3, "state_every": 2}).seconds
    assert sparse == pytest.approx(compute + 120 + 1680 / 2e9 + (3 * 1680 + 2 * 5040) / 1e9)


def test_the_table_flags_jobs_that_do_not_fit() -> None:
    rows = [
        job(name="7b-one-gpu", gpus=1, micro_batch=4),
        job(name="1b-fits", model="llama-3.2-1b", gpus=1, seq_len=512, micro_batch=4),
    ]
    table = plan.plan_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["job", "GPUs", "batch", "precision"]
    # global batch 8 on one GPU with micro-batches of 4: two accumulation steps
    assert "8=1x2x4" in next(line for line in lines if line.startswith("7b-one-gpu"))
    assert "EXCEEDS 80 GiB" in next(line for line in lines if line.startswith("7b-one-gpu"))
    assert "EXCEEDS" not in next(line for line in lines if line.startswith("1b-fits"))
    assert "Assumptions:" in table and "MFU" in table
    assert "EXCEEDS" not in plan.plan_table([job(name="big", gpus=1, gpu_memory_gib=1000)])


def test_cli_plan_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = [job(name="from-json")]
    assert main(["plan", "--jobs", json.dumps(jobs)]) == 0
    assert "from-json" in capsys.readouterr().out
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps({"jobs": [job(name="from-file")]}))
    assert main(["plan", "--jobs", str(path)]) == 0
    assert "from-file" in capsys.readouterr().out


# -- the jobs of a workflow config (the `plan` rule) ---------------------------------------------


def paper_config() -> dict:
    """config/paper.yaml merged over config/config.yaml, as `--configfile` merges it."""
    return shipped_config("paper.yaml")


def test_one_job_per_unlearning_run_with_the_benchmarks_gpus() -> None:
    from bilevel_unlearning.runs import unlearn_runs

    config = paper_config()
    jobs = plan.config_jobs(config, plan.DEFAULT_GPUS)
    names = [j["name"] for j in jobs]
    expected = [f"{b}/{r}" for b in config["benchmarks"] for r in unlearn_runs(config, b)]
    assert names == expected
    by_name = {j["name"]: j for j in jobs}
    news = by_name["muse_news/blur_npo"]
    assert (news["model"], news["gpus"], news["strategy"]) == (
        "muse-bench/MUSE-news_target",
        4,
        "fsdp",
    )
    # the paper's global batch 4 on 4 GPUs: one sequence each, no accumulation
    assert (news["seq_len"], news["micro_batch"], news["batch"]) == (2048, 1, 4)
    one_gpu = plan.config_jobs(config, {**plan.DEFAULT_GPUS, "muse_news": 1})
    assert next(j for j in one_gpu if j["name"] == news["name"])["steps"] == news["steps"]
    assert news["steps"] == 10 * 102  # MUSE News: 102 steps an epoch (SPEC section 3)
    assert by_name["wmdp/rmu"]["steps"] == 150  # the authors' 150 batches
    tofu = by_name["tofu/blur_npo-forget05"]
    assert (tofu["gpus"], tofu["strategy"], tofu["batch"], tofu["seq_len"]) == (1, "ddp", 32, 512)
    assert by_name["wmdp/rmu"]["seq_len"] == 768  # the longer of the topics' forget lengths
    assert by_name["wmdp/blur_rmu"]["method"]["layers"] == [5, 6, 7]
    # FSDP for a 7B model on more than one GPU, DDP otherwise (one GPU, or TOFU's 1B model)
    gpus = {**plan.DEFAULT_GPUS, "muse_news": 1, "muse_books": 2, "tofu": 2, "wmdp": 4}
    strategies = {j["name"].split("/")[0]: j["strategy"] for j in plan.config_jobs(config, gpus)}
    assert strategies == {"muse_news": "ddp", "muse_books": "fsdp", "tofu": "ddp", "wmdp": "fsdp"}
    assert plan.DEFAULT_GPUS["wmdp"] == 1  # RMU on one GPU, as the authors and the profile


def test_steps_follow_the_loops_batching_of_the_reference_sizes() -> None:
    by_name = {j["name"]: j for j in plan.config_jobs(paper_config(), plan.DEFAULT_GPUS)}
    # MUSE News: 408 chunks of 2048 tokens, global batch 4: 102 steps an epoch, 10 epochs
    assert by_name["muse_news/blur_npo"]["steps"] == 10 * 102
    # TOFU forget05: 200 items, global batch 32: 7 steps an epoch
    assert by_name["tofu/blur_npo-forget05"]["steps"] == 10 * 7
    assert by_name["tofu/ga-forget01"]["steps"] == 10 * 2
    # WMDP: the gated bio corpus's size is unknown until it is there, but the cyber corpus
    # alone has more than the authors' 150 batches; without that cap: runtime "?"
    assert by_name["wmdp/rmu"]["steps"] == 150
    uncapped = paper_config()
    del uncapped["unlearn"]["wmdp"]["max_steps_per_epoch"]
    wmdp = plan.config_jobs(uncapped, plan.DEFAULT_GPUS)[-1]
    assert wmdp["steps"] is None
    table = plan.plan_table([wmdp, by_name["tofu/ga-forget01"]], ["a note"])
    assert table.splitlines()[2].split()[-2] == "?"  # runtime unknown, then the disk
    assert "+ 1 of unknown runtime" in table
    assert "Notes:\n- a note" in table


def test_local_data_of_the_same_source_are_counted(tmp_path: Path) -> None:
    config = paper_config()
    del config["unlearn"]["wmdp"]["max_steps_per_epoch"]  # count every batch
    data = tmp_path / "wmdp" / "data"
    (data / "corpora").mkdir(parents=True)
    (data / "corpora" / "cyber-forget-corpus.jsonl").write_text('{"text": "x"}\n' * 10)
    (data / "corpora" / "bio-forget-corpus.jsonl").write_text('{"text": "y"}\n' * 30)
    # miniature files where the hub data will go (no provenance.json) are not counted
    assert plan.config_jobs(config, plan.DEFAULT_GPUS, tmp_path)[-1]["steps"] is None
    (data / "provenance.json").write_text("{}")
    wmdp = plan.config_jobs(config, plan.DEFAULT_GPUS, tmp_path)[-1]
    assert wmdp["steps"] == 1 * (8 + 3)  # ceil(30 / 4) bio + ceil(10 / 4) cyber batches
    bio = tmp_path / "gated.jsonl"
    bio.write_text('{"text": "z"}\n' * 17)
    (data / "corpora" / "bio-forget-corpus.jsonl").unlink()
    wmdp = plan.config_jobs(config, plan.DEFAULT_GPUS, tmp_path, bio)[-1]
    assert wmdp["steps"] == 5 + 3  # the user's gated file stands in for the bio corpus


def test_the_miniature_plans_its_own_architecture() -> None:
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    gpus = {b: plan.default_gpus(b, "miniature") for b in config["benchmarks"]}
    jobs = plan.config_jobs(config, gpus)
    assert {j["gpus"] for j in jobs} == {1}
    assert all(isinstance(j["model"], dict) for j in jobs)
    assert "muse_news/blur_npo" in plan.plan_table(jobs)


def test_the_plan_prints_the_disk_of_each_run_and_the_totals() -> None:
    """Published epochs in the compute dtype plus one training state: a 7B MUSE run in mixed
    precision keeps 10 x 13.5 GB of weights and 27 + 54 GB of master weights and moments."""
    by_name = {j["name"]: j for j in plan.config_jobs(paper_config(), plan.DEFAULT_GPUS)}
    news = plan.estimate(by_name["muse_news/blur_npo"])
    params = news.params
    assert news.disk == 10 * 2 * params + 4 * params + 8 * params
    table = plan.plan_table(list(by_name.values()))
    totals = next(line for line in table.splitlines() if line.startswith("Totals:"))
    assert f"{len(by_name)} unlearning runs" in totals and "GPU-hours" in totals and "TB" in totals


def test_evaluation_cost_by_hand_and_the_paper_plan_counts_what_all_requests() -> None:
    """One evaluation: start-up + reading the weights + the scored tokens' FLOPs + decoding
    (a weight read per new token and batch); the plan counts the evaluations `all` requests
    (what the outputs read) and those `all_epochs` adds."""
    from bilevel_unlearning.plan import evaluation

    config = {"precision": "float32", "evaluate": {"tofu": {"batch_size": 500}}}
    work = evaluation.EVAL_WORKLOADS["tofu"]
    seconds = evaluation.evaluation_seconds(config, "tofu", TINY)
    params, matmul = 420, 376
    expected = (
        60
        + params * 4 / 2e9
        + 2 * matmul * work.scored_tokens / (67e12 * 0.35)
        + work.new_tokens * math.ceil(work.prompts / 500) * params * 4 / 3.35e12
    )
    assert seconds == pytest.approx(expected)

    paper = shipped_config("paper.yaml")
    counts = {c.benchmark: c for c in evaluation.evaluation_counts(paper)}
    assert {b: c.requested for b, c in counts.items()} == {
        "muse_news": 127,
        "muse_books": 12,
        "tofu": 24,
        "wmdp": 3,
    }
    assert sum(c.every_epoch for c in counts.values()) == 391
    text = plan.config_plan(paper, {b: (plan.default_gpus(b, "hub"), "test") for b in counts})
    assert "Evaluations (one GPU each):" in text and "GPU-hours (snakemake all):" in text


def test_time_limits_come_from_the_plan_with_a_margin_and_grow_per_attempt() -> None:
    """sbatch -t of an unlearning job: 3 x the plan's runtime + 30 minutes, times the attempt
    (the profile's flat 480 minutes were 30-100 x the plan's 4-14); unknown forget set: 480."""
    from bilevel_unlearning.plan import workload

    config = paper_config()
    job = next(
        j for j in plan.config_jobs(config, plan.DEFAULT_GPUS) if j["name"] == "muse_news/ga"
    )
    minutes = plan.estimate(job).seconds / 60
    limit = workload.time_limit_minutes(config, "muse_news", "ga", 4)
    assert limit == math.ceil(minutes * 3 + 30) and 30 < limit < 120
    assert workload.time_limit_minutes(config, "muse_news", "ga", 4, attempt=2) == 2 * limit
    assert workload.time_limit_minutes(config, "muse_news", "ga", 1) > limit  # one GPU: slower
    uncapped = paper_config()
    del uncapped["unlearn"]["wmdp"]["max_steps_per_epoch"]
    assert workload.time_limit_minutes(uncapped, "wmdp", "rmu", 1) == 480


def test_the_h200_option_is_two_gpus_in_mixed_precision() -> None:
    """A 7B MUSE run in `precision: mixed` (the paper config): one 141 GB H200 does not hold
    it (issue 23 item 4), two do under FSDP2; pure bf16 would fit one, but rounds away most
    AdamW updates at lr 1e-5, so the profile offers 2 x H200, not 1 (profiles/slurm)."""
    muse = job(precision="mixed", batch=32, micro_batch=4, gradient_checkpointing=True, gpu="H200")
    one = plan.estimate({**muse, "gpus": 1, "strategy": "ddp"})
    two = plan.estimate({**muse, "gpus": 2, "strategy": "fsdp"})
    assert not one.fits and one.total / 2**30 > 131
    assert two.fits and two.total < one.total / 1.8
