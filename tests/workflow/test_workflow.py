"""End to end: the real Snakemake workflow on a tiny config, through data, models and sanity.

Asserts on the numbers of the sanity report (the miniature must discriminate target from
oracle), on provenance, and on Snakemake's view of the finished DAG.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import REPO
from workflow_helpers import planned_jobs, run_snakemake, snakemake_command

from bilevel_unlearning.runs import attack_kind

TINY = REPO / "tests" / "config" / "tiny.yaml"
TARGETS = ("all", "robustness")  # the default run, and the attacks (its own target)

pytestmark = pytest.mark.workflow
# jobs that gather every result: planned again whenever any result changes
REPORT_JOBS = {
    "sanity_report",
    "table_1_muse",
    "table_s1_muse_mia",
    "table_4_robustness",
    "figure_4_trajectories",
    "figure_5_relearning",
    "manifest",
    "manifest_robustness",
    "compare_expected",
    "compare_expected_robustness",
    "table_reproduction",  # on the miniature it reads the expected-table comparison
    "robustness",  # the target rule itself, as `all`
}


def snakemake(
    workdir: Path, *args: str, overrides: tuple[Path, ...] = ()
) -> subprocess.CompletedProcess:
    """Run the workflow in workdir with the tiny config, then the override files, merged."""
    return run_snakemake(workdir, *args, configfiles=(TINY, *overrides))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    shutil.copytree(REPO / "config", workdir / "config")
    result = snakemake(workdir, *TARGETS)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def test_sanity_report_discriminates(tiny_run: Path) -> None:
    report = json.loads((tiny_run / "results" / "sanity_report.json").read_text())
    by_name = {b["benchmark"]: b for b in report["benchmarks"]}
    assert set(by_name) == {"muse_news", "tofu", "wmdp"}

    muse = by_name["muse_news"]["scores"]  # fractions, like every result
    assert muse["target"]["knowmem_forget"] - muse["retrain"]["knowmem_forget"] >= 0.25
    assert abs(muse["target"]["knowmem_retain"] - muse["retrain"]["knowmem_retain"]) <= 0.10
    assert muse["target"]["verbmem_forget"] > muse["retrain"]["verbmem_forget"]

    tofu = by_name["tofu"]["scores"]
    assert tofu["full"]["rouge_forget10"] > tofu["retain90"]["rouge_forget10"] + 0.10
    assert tofu["retain90"]["rouge_retain"] > 0.50

    wmdp = by_name["wmdp"]["scores"]
    for task in ("mini_wmdp_bio", "mini_wmdp_cyber"):
        assert wmdp["original"][task] >= 0.6
        assert wmdp["original"][task] > wmdp["base"][task]
    assert report["all_checks_pass"] is True
    table = (tiny_run / "results" / "sanity_report.md").read_text()
    row = (  # shown x100, as T1 shows KnowMem
        f"| muse_news | knowmem_forget | target | {100 * muse['target']['knowmem_forget']:.2f} "
        f"| retrain | {100 * muse['retrain']['knowmem_forget']:.2f} |"
    )
    assert row in table


def test_models_load_and_record_provenance(tiny_run: Path) -> None:
    from transformers import AutoModelForCausalLM

    results = tiny_run / "results"
    for folder in ("muse_news/models/target", "tofu/models/retain90", "wmdp/models/original"):
        model = AutoModelForCausalLM.from_pretrained(results / folder)
        assert model.config.model_type == "llama"
        assert model.config.hidden_size == 96
        provenance = json.loads((results / folder / "provenance.json").read_text())
        assert provenance["seed"] == 0
        assert len(provenance["inputs"]) >= 3
        assert all(len(digest) == 64 for digest in provenance["inputs"].values())
    target = json.loads((results / "muse_news/models/target/provenance.json").read_text())
    retrain = json.loads((results / "muse_news/models/retrain/provenance.json").read_text())
    assert any("raw/forget.jsonl" in path for path in target["inputs"])
    assert not any("raw/forget.jsonl" in path for path in retrain["inputs"])


def test_finished_workflow_has_nothing_to_do(tiny_run: Path) -> None:
    result = snakemake(tiny_run, "--dry-run", *TARGETS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def plan_with_override(workdir: Path, name: str, yaml_text: str) -> dict[str, int]:
    """The jobs a dry run plans once an override file is merged over the tiny config."""
    override = workdir / name
    override.write_text(yaml_text)
    result = snakemake(workdir, "--dry-run", *TARGETS, overrides=(override,))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return planned_jobs(output)


def test_changed_setting_reruns_only_dependent_jobs(tiny_run: Path) -> None:
    """Changing the TOFU generation length reruns TOFU's probes, evaluations and table only
    (the attacked models' evaluations too, but not the attacks)."""
    plan = plan_with_override(tiny_run, "override.yaml", "tofu:\n  generation_max_new_tokens: 20\n")
    # full and retain oracle of forget10 at epoch 0, ga_gdr-forget10 at epoch 2: each as it is
    # and after relearn_s8, relearn_heldout_s8 and quantize_int4
    assert plan.pop("evaluate_tofu") == 3 * 4
    assert plan.pop("sanity_tofu") == 1
    assert plan.pop("table_3_tofu") == 1
    assert set(plan) <= REPORT_JOBS


def test_unlearning_stage_writes_every_epoch_and_its_log(tiny_run: Path) -> None:
    from safetensors.torch import load_file

    results = tiny_run / "results"
    run = results / "muse_news" / "unlearn" / "blur_npo"
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert {entry["epoch"] for entry in log} == {1, 2}
    # NPO starts at the reference model: its loss is (2 / beta) * log 2 with beta 0.1.
    assert log[0]["forget_loss"] == pytest.approx(20 * math.log(2), rel=1e-5)
    assert log[-1]["forget_loss"] < log[0]["forget_loss"]
    assert all({"inner", "forget_sq", "retain_sq", "cosine", "xi"} <= set(e) for e in log)
    for epoch in (1, 2):
        provenance = json.loads((run / f"epoch_{epoch}" / "provenance.json").read_text())
        assert provenance["settings"]["method"]["rule"] == "blur"

    original = load_file(results / "wmdp/models/original/model.safetensors")
    unlearned = load_file(results / "wmdp/unlearn/rmu/epoch_1/model.safetensors")
    changed = {k for k in original if not torch.equal(original[k], unlearned[k])}
    assert changed == {f"model.layers.{i}.mlp.down_proj.weight" for i in (0, 1)}  # its layers
    assert (results / "tofu/unlearn/ga_gdr-forget10/epoch_2/model.safetensors").is_file()


def test_adding_a_method_plans_only_its_own_jobs(tiny_run: Path) -> None:
    methods = yaml.safe_load(TINY.read_text())["unlearn"]["muse_news"]["methods"]
    more = f"unlearn:\n  muse_news:\n    methods: [{', '.join(methods)}, ga_gdr]\n"
    plan = plan_with_override(tiny_run, "more_methods.yaml", more)
    assert plan.pop("unlearn_muse_news") == 1
    assert plan.pop("evaluate_muse_news") == 2  # its two evaluated epochs
    assert set(plan) <= REPORT_JOBS


def evaluation(workdir: Path, benchmark: str, row: str, epoch: int, attack: str = "none") -> dict:
    path = workdir / "results" / benchmark / "eval" / row / attack / f"epoch_{epoch}.json"
    return json.loads(path.read_text())


def test_muse_evaluation_separates_target_from_retrain(tiny_run: Path) -> None:
    target = evaluation(tiny_run, "muse_news", "target", 0)
    retrain = evaluation(tiny_run, "muse_news", "retrain", 0)
    t, r = target["metrics"], retrain["metrics"]  # fractions (T1 shows them x100)
    assert t["knowmem_forget"] - r["knowmem_forget"] >= 0.25
    assert abs(t["knowmem_retain"] - r["knowmem_retain"]) <= 0.10
    assert t["verbmem_forget"] > r["verbmem_forget"]
    # the target memorised the forget texts: it ranks them as members (AUC near 0)
    assert t["privleak"] < -0.5 and r["privleak"] == 0.0
    assert t["auc_retrain"] == r["privleak_auc"]
    # aggregates are the means of the per-item scores they came from
    data = tiny_run / "results" / "muse_news" / "data"
    items = target["items"]["knowmem_forget"]
    assert len(items) == len((data / "knowmem/forget_qa.jsonl").read_text().splitlines())
    assert t["knowmem_forget"] == pytest.approx(sum(x["rouge_l_f1"] for x in items) / len(items))
    unlearned = evaluation(tiny_run, "muse_news", "npo_gdr", 2)["metrics"]
    assert unlearned["knowmem_forget"] < t["knowmem_forget"]


def test_tofu_evaluation_uses_the_retain_oracle(tiny_run: Path) -> None:
    from bilevel_unlearning.evaluation.metrics import harmonic_mean

    full = evaluation(tiny_run, "tofu", "full-forget10", 0)["metrics"]
    oracle = evaluation(tiny_run, "tofu", "retain-forget10", 0)["metrics"]
    assert oracle["forget_quality"] == pytest.approx(1.0)
    assert full["forget_quality"] < 0.05 < oracle["forget_quality"]
    assert full["forget_Q_A_Prob"] > oracle["forget_Q_A_Prob"]
    parts = [
        full[f"{s}_{k}"]
        for s in ("retain", "ra", "wf")
        for k in ("Q_A_Prob", "Q_A_ROUGE", "Truth_Ratio")
    ]
    assert full["model_utility"] == pytest.approx(harmonic_mean(parts))


def test_wmdp_evaluation_through_lm_eval(tiny_run: Path) -> None:
    original = evaluation(tiny_run, "wmdp", "original", 0)
    assert original["metrics"]["wmdp_bio_acc"] >= 0.6
    questions = tiny_run / "results/wmdp/data/questions/wmdp-bio.jsonl"
    correct = [x["correct"] for x in original["items"]["mini_wmdp_bio"]]
    assert len(correct) == len(questions.read_text().splitlines())
    assert original["metrics"]["wmdp_bio_acc"] == pytest.approx(sum(correct) / len(correct))
    assert original["lm_eval"]["version"] and original["lm_eval"]["task_config_sha256"]


def test_evaluations_record_provenance(tiny_run: Path) -> None:
    record = evaluation(tiny_run, "muse_news", "blur_npo", 1)
    provenance = record["provenance"]
    assert len(provenance["git"]["commit"]) == 40
    assert len(provenance["config_sha256"]) == 64
    assert set(provenance["model_sha256"]) == {"model.safetensors"}
    assert any(p.endswith("knowmem/forget_qa.jsonl") for p in provenance["data_sha256"])
    assert provenance["precision"] == "float32" and provenance["seed"] == 0


ATTACKS = ("none", "relearn_s8", "quantize_int4")


def test_relearning_brings_back_what_ga_and_npo_removed(tiny_run: Path) -> None:
    """The attack is strong enough to be a test: a few steps on a sample of the forget corpus
    bring KnowMem back far above the unattacked model and above what the same steps teach
    the oracle, which never saw the data."""
    recovered = {}
    for row in ("ga", "npo", "retrain"):
        epoch = 0 if row == "retrain" else 2
        plain = evaluation(tiny_run, "muse_news", row, epoch)["metrics"]
        attacked = evaluation(tiny_run, "muse_news", row, epoch, "relearn_s8")["metrics"]
        recovered[row] = attacked["knowmem_forget"] - plain["knowmem_forget"]
    assert recovered["ga"] > 0.10 and recovered["npo"] > 0.10
    assert min(recovered["ga"], recovered["npo"]) > recovered["retrain"]
    tofu = [evaluation(tiny_run, "tofu", "ga_gdr-forget10", 2, a)["metrics"] for a in ATTACKS]
    assert tofu[1]["forget_Q_A_Prob"] > tofu[0]["forget_Q_A_Prob"] + 0.2
    # the attacked oracle's PrivLeak is read against the oracle itself, unattacked
    oracle = evaluation(tiny_run, "muse_news", "retrain", 0)["metrics"]
    relearned = evaluation(tiny_run, "muse_news", "retrain", 0, "relearn_s8")["metrics"]
    assert relearned["auc_retrain"] == oracle["privleak_auc"]


def test_attacked_models_record_their_source_and_are_quantized(tiny_run: Path) -> None:
    from safetensors.torch import load_file

    from bilevel_unlearning.io import sha256_file

    results = tiny_run / "results" / "muse_news"
    unlearned = results / "unlearn" / "npo" / "epoch_2" / "model.safetensors"
    for attack in ATTACKS[1:]:
        folder = results / "attack" / "npo" / attack / "epoch_2"
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["attacked_sha256"]["model.safetensors"] == sha256_file(unlearned)
        assert provenance["settings"]["kind"] == attack_kind(attack)
    weights = load_file(
        results / "attack" / "npo" / "quantize_int4" / "epoch_2" / "model.safetensors"
    )
    q_proj = weights["model.layers.0.self_attn.q_proj.weight"]
    for group in q_proj.reshape(-1, 32):
        assert len(torch.unique(group)) <= 16
    assert torch.equal(weights["lm_head.weight"], load_file(unlearned)["lm_head.weight"])
    record = evaluation(tiny_run, "muse_news", "npo", 2, "quantize_int4")
    assert record["attack"] == "quantize_int4"
    assert record["provenance"]["model"].endswith("attack/npo/quantize_int4/epoch_2")


def test_robustness_table_equals_the_result_jsons(tiny_run: Path) -> None:
    from bilevel_unlearning.report.manifest import read_table_csv

    table = read_table_csv(tiny_run / "paper_figures/table_4_robustness.csv")
    plain, attacked = (
        evaluation(tiny_run, "wmdp", "rmu", 2, a)["metrics"]["wmdp_bio_acc"]
        for a in ("none", "relearn_s8")
    )
    # the CSV holds what the table shows: accuracies x100, the change between shown values
    assert table[("wmdp:rmu:wmdp_bio_acc", "none")] == plain * 100
    assert table[("wmdp:rmu:wmdp_bio_acc", "recovered:relearn_s8")] == (
        attacked * 100 - plain * 100
    )


def test_heldout_relearning_recovers_less_than_relearning_the_same_set(tiny_run: Path) -> None:
    """Relearning one half of the forget people brings back less of the other half's facts
    than relearning a sample of all of them brings back of all (docs/robustness.md); the
    oracle, which never knew either half, gains next to nothing."""
    from bilevel_unlearning.report.manifest import read_table_csv

    table = read_table_csv(tiny_run / "paper_figures/table_4_robustness.csv")

    def recovered(row: str, metric: str, attack: str) -> float:
        return table[(f"{row}:{metric}", f"recovered:{attack}")]

    for row in ("muse_news:ga", "muse_news:npo"):
        same = recovered(row, "knowmem_forget", "relearn_s8")
        held = recovered(row, "knowmem_forget", "relearn_heldout_s8")
        assert same > 10 and held < same, (row, same, held)
    assert abs(recovered("muse_news:retrain", "knowmem_forget", "relearn_heldout_s8")) < 5
    tofu = "tofu:ga_gdr-forget10"
    assert recovered(tofu, "forget_Q_A_Prob", "relearn_heldout_s8") < recovered(
        tofu, "forget_Q_A_Prob", "relearn_s8"
    )
    split = json.loads(
        (tiny_run / "results/muse_news/attack/heldout_split/forget.json").read_text()
    )
    attacked = json.loads(
        (
            tiny_run / "results/muse_news/attack/npo/relearn_heldout_s8/epoch_2/provenance.json"
        ).read_text()
    )
    assert attacked["settings"]["kind"] == "relearn_heldout"
    assert len(split["heldout_items"]["knowmem_forget"]) < split["items"]["knowmem_forget"]


def test_both_baldro_forms_unlearn_end_to_end(tiny_run: Path) -> None:
    from bilevel_unlearning.report.manifest import read_table_csv

    table = read_table_csv(tiny_run / "paper_figures/table_1_muse.csv")
    target = table[("target", "News:knowmem_forget")]
    columns = sorted({column for _, column in table})
    for row, plain in (("baldro_g_npo", "npo_gdr"), ("blur_npo_baldro_dv", "blur_npo")):
        assert table[(row, "News:knowmem_forget")] < target - 30
        # a BalDRO form that did nothing would give its plain method's row, bit for bit (one
        # metric alone can coincide: KnowMem counts a few dozen answers)
        assert [table[(row, c)] for c in columns] != [table[(plain, c)] for c in columns]


PAPER = (
    "table_1_muse",
    "table_2_wmdp",
    "table_3_tofu",
    "figure_1_geometry",
    "figure_2_gamma",
    "figure_3_tradeoff",
    "figure_4_trajectories",
    "table_4_robustness",
    "figure_5_relearning",
)


def test_every_table_and_figure_is_made(tiny_run: Path) -> None:
    import matplotlib.image

    out = tiny_run / "paper_figures"
    for name in PAPER:
        if name.startswith("table"):
            for suffix in (".csv", ".md", ".tex"):
                assert (out / name).with_suffix(suffix).stat().st_size > 100
        else:
            assert (out / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
            assert matplotlib.image.imread(out / f"{name}.png").size > 0


def test_table_values_equal_the_result_jsons(tiny_run: Path) -> None:
    from bilevel_unlearning.report.manifest import read_table_csv

    muse = read_table_csv(tiny_run / "paper_figures/table_1_muse.csv")
    record = evaluation(tiny_run, "muse_news", "blur_npo", 2)  # table_epoch: the last
    # tables show MUSE's metrics and WMDP's accuracies x100 (metric_catalog), TOFU's as stored
    assert muse[("blur_npo", "News:privleak")] == record["metrics"]["privleak"] * 100
    assert muse[("target", "News:knowmem_forget")] == pytest.approx(
        evaluation(tiny_run, "muse_news", "target", 0)["metrics"]["knowmem_forget"] * 100
    )
    tofu = read_table_csv(tiny_run / "paper_figures/table_3_tofu.csv")
    record = evaluation(tiny_run, "tofu", "ga_gdr-forget10", 2)
    assert tofu[("ga_gdr", "forget10:forget_quality")] == record["metrics"]["forget_quality"]
    wmdp = read_table_csv(tiny_run / "paper_figures/table_2_wmdp.csv")
    record = evaluation(tiny_run, "wmdp", "blur_rmu", 2)
    assert wmdp[("blur_rmu", "WMDP:mmlu_acc")] == record["metrics"]["mmlu_acc"] * 100


def test_tables_match_the_committed_expected_ones(tiny_run: Path) -> None:
    """Every cell bit for bit on a pinned machine (x86-64 with AVX2: the pins give the same
    bits on every such CPU); anywhere else within its seed band (report.bands)."""
    comparison = json.loads((tiny_run / "paper_figures/expected_comparison.json").read_text())
    cells = [cell for cells in comparison["tables"].values() for cell in (cells or [])]
    assert all(cells for cells in comparison["tables"].values()), comparison["tables"].keys()
    outside = [cell for cell in cells if cell["status"] == "outside"]
    assert not outside, (comparison["status_counts"], outside)
    if comparison["pinned"]:
        moved = [
            f"{c['row']} / {c['column']}: expected {c['expected']!r}, produced {c['produced']!r}"
            for c in cells
            if c["status"] != "equal"
        ]
        assert not moved, f"{len(moved)} cells moved on a pinned machine:\n" + "\n".join(moved)
    assert comparison["all_within_tolerance"], comparison["status_counts"]


def test_manifest_verifies_and_catches_a_changed_output(tiny_run: Path) -> None:
    result = snakemake(tiny_run, "verify")
    assert result.returncode == 0, result.stderr[-3000:]
    table = tiny_run / "paper_figures/table_2_wmdp.md"
    original = table.read_bytes()
    try:
        table.write_bytes(original + b"tampered\n")
        command = [sys.executable, "-m", "bilevel_unlearning.cli", "verify"]
        command += ["--manifest", "paper_figures/MANIFEST.json"]
        result = subprocess.run(command, cwd=tiny_run, capture_output=True, text=True)
        assert result.returncode != 0
        assert "table_2_wmdp.md: checksum differs" in result.stdout + result.stderr
    finally:
        table.write_bytes(original)


def planned_after_editing(workdir: Path, module: Any) -> dict[str, int]:
    """The jobs a dry run plans while a module's source carries an edit (Snakemake compares
    input checksums, so a mere touch is not a change); the source is restored after."""
    code = Path(module.__file__)
    original = code.read_bytes()
    try:
        code.write_bytes(original + b"\n# edited\n")
        result = snakemake(workdir, "--dry-run")
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        return planned_jobs(output)
    finally:
        code.write_bytes(original)


def test_editing_one_figure_code_reruns_only_that_figure(tiny_run: Path) -> None:
    import bilevel_unlearning.metric_catalog as catalog
    import bilevel_unlearning.report.fig_trajectories as module

    jobs = planned_after_editing(tiny_run, module)
    assert jobs == {"figure_4_trajectories": 1, "manifest": 1}
    plan = snakemake(tiny_run, "--dry-run", "paper_figures/figure_2_gamma.pdf")
    assert "Nothing to be done" in plan.stdout + plan.stderr
    # the metric catalog (scales, digits) is code of every table and figure, and of nothing else
    jobs = planned_after_editing(tiny_run, catalog)
    paper = {name for name in jobs if name.startswith(("table_", "figure_"))}
    assert paper >= {"table_1_muse", "table_2_wmdp", "table_3_tofu", "figure_4_trajectories"}
    assert not any(name.startswith(("evaluate_", "unlearn_", "attack_")) for name in jobs)


def kill_after_first_checkpoint(workdir: Path, run: Path) -> None:
    """Start the workflow and kill it (SIGKILL, the whole process group, as a time limit or a
    node failure does) as soon as the run's first epoch is checkpointed."""
    import os
    import signal
    import time

    command = snakemake_command(workdir, configfiles=(TINY,))
    job = subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    state = run / "checkpoints" / "epoch_1" / "trainer_state.pt"
    deadline = time.monotonic() + 600
    while not state.is_file() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert state.is_file(), "the run was not checkpointed before the kill"


def test_a_killed_unlearning_job_resumes_after_unlock_and_gives_the_same_tables(
    tiny_run: Path,
) -> None:
    """The README's recovery: after a kill, `snakemake --unlock`, then the same command with
    --rerun-incomplete (the profiles set it); the job resumes from its last checkpoint and
    every number is the same."""
    run = tiny_run / "results/muse_news/unlearn/blur_npo"
    table = (tiny_run / "paper_figures/table_1_muse.csv").read_text()
    before = evaluation(tiny_run, "muse_news", "blur_npo", 2)["metrics"]
    shutil.rmtree(run)  # a fresh run of this job, killed after its first epoch
    kill_after_first_checkpoint(tiny_run, run)
    refused = snakemake(tiny_run)  # a plain rerun is refused, naming the way out
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0 and ("--unlock" in said or "--rerun-incomplete" in said)
    assert snakemake(tiny_run, "--unlock").returncode == 0
    result = snakemake(tiny_run, "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tiny_run / "results/logs/unlearn/muse_news/blur_npo.log").read_text()
    assert "resumed after epoch" in log
    assert evaluation(tiny_run, "muse_news", "blur_npo", 2)["metrics"] == before
    assert (tiny_run / "paper_figures/table_1_muse.csv").read_text() == table


# -- no silently wrong result: reruns after a setting changed, verify, bad config files ----------


def copy_of(tiny_run: Path, tmp_path: Path) -> Path:
    """A finished run to change (file times and Snakemake's metadata kept)."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    return work


def weights_sha(run: Path, epoch: int = 2) -> str:
    from bilevel_unlearning.io import sha256_file

    return sha256_file(run / f"epoch_{epoch}" / "model.safetensors")


def table_row(work: Path, row: str) -> str:
    lines = (work / "paper_figures/table_1_muse.csv").read_text().splitlines()
    return next(line for line in lines if line.split(",")[0] == row)


def retrain_from_scratch(work: Path, run: Path, overrides: tuple[Path, ...]) -> None:
    """The same run with the same config, its checkpoints and outputs deleted first."""
    shutil.rmtree(run)
    result = snakemake(work, str(run.relative_to(work) / "train_log.jsonl"), overrides=overrides)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "override",
    [
        "methods:\n  blur_npo:\n    gamma: 2.0\n",
        "unlearn:\n  muse_news:\n    learning_rate: 2.0e-3\n",
    ],
    ids=["gamma", "learning-rate"],
)
def test_a_changed_setting_retrains_from_the_start_model_not_the_old_checkpoint(
    tiny_run: Path, tmp_path: Path, override: str
) -> None:
    """The reviewer's case: the rerun used to resume from the old setting's checkpoints and
    publish the old weights under the new setting's name."""
    work = copy_of(tiny_run, tmp_path)
    run = work / "results/muse_news/unlearn/blur_npo"
    before_weights, before_row = weights_sha(run), table_row(work, "blur_npo")
    (work / "override.yaml").write_text(override)
    overrides = (work / "override.yaml",)
    result = snakemake(work, overrides=overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (work / "results/logs/unlearn/muse_news/blur_npo.log").read_text()
    assert "not resuming" in log and "made with different" in log
    changed = weights_sha(run)
    assert changed != before_weights
    assert table_row(work, "blur_npo") != before_row
    retrain_from_scratch(work, run, overrides)
    assert weights_sha(run) == changed


def test_a_changed_start_model_retrains_from_it(tiny_run: Path, tmp_path: Path) -> None:
    """Another target model (here: the retrain oracle's weights in its place) reruns the
    unlearning, which must start from it, not resume from the old target's checkpoints."""
    work = copy_of(tiny_run, tmp_path)
    run = work / "results/muse_news/unlearn/blur_npo"
    models = work / "results/muse_news/models"
    before = weights_sha(run)
    # as a rerun of the target's rule leaves it: a new folder, renamed into place
    staged = models / "target.new"
    shutil.copytree(models / "target", staged)
    shutil.copyfile(models / "retrain/model.safetensors", staged / "model.safetensors")
    shutil.rmtree(models / "target")
    staged.rename(models / "target")
    for path in [models / "target", *(models / "target").iterdir()]:
        os.utime(path)  # written now, as by the rule (copytree kept the old times)
    target = str(run.relative_to(work) / "train_log.jsonl")
    result = snakemake(work, target)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (work / "results/logs/unlearn/muse_news/blur_npo.log").read_text()
    assert "not resuming" in log and "inputs" in log
    changed = weights_sha(run)
    assert changed != before
    retrain_from_scratch(work, run, ())
    assert weights_sha(run) == changed


def test_verify_covers_the_model_weights_and_runs_no_other_job(
    tiny_run: Path, tmp_path: Path
) -> None:
    work = copy_of(tiny_run, tmp_path)
    # a stale workspace: a setting changed, so jobs are pending; verify must not run them
    (work / "override.yaml").write_text("tofu:\n  generation_max_new_tokens: 20\n")
    stale = snakemake(work, "verify", overrides=(work / "override.yaml",))
    output = stale.stdout + stale.stderr
    assert stale.returncode == 0, output[-3000:]
    assert planned_jobs(output) == {"verify": 1}
    manifest = json.loads((work / "paper_figures/MANIFEST.json").read_text())
    weights = [name for name in manifest["models"] if name.endswith("model.safetensors")]
    assert "results/muse_news/unlearn/blur_npo/epoch_2/model.safetensors" in weights
    (work / "results/muse_news/unlearn/blur_npo/epoch_2/model.safetensors").unlink()
    broken = snakemake(work, "verify")
    assert broken.returncode != 0
    assert "blur_npo/epoch_2/model.safetensors: missing" in broken.stdout + broken.stderr


def test_a_duplicate_key_in_a_configfile_names_the_file_and_line(tiny_run: Path) -> None:
    twice = tiny_run / "twice.yaml"
    twice.write_text("seed: 1\nprecision: float32\nseed: 2\n")
    result = snakemake(tiny_run, "--dry-run", overrides=(twice,))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "found key 'seed' twice" in output and f'"{twice}", line 3' in output


def test_a_selection_rule_chooses_each_rows_epoch_in_the_tables(
    tiny_run: Path, tmp_path: Path
) -> None:
    """evaluate.<b>.select end to end, in a hard-linked copy of the tiny run: only T1, S1 and
    F4 are made again, and T1 shows each method at the epoch the rule picks from its result
    files (the lowest KnowMem D_f whose KnowMem D_r is within 50% of the target's)."""
    workdir = tmp_path / "selected"
    shutil.copytree(tiny_run, workdir, copy_function=os.link, symlinks=True)
    rule = {
        "metric": "knowmem_forget",
        "direction": "min",
        "constraint": {"metric": "knowmem_retain", "within": 0.5, "of": "start"},
    }
    overlay = tmp_path / "select.yaml"
    overlay.write_text(yaml.safe_dump({"evaluate": {"muse_news": {"select": rule}}}))
    targets = ("paper_figures/table_1_muse.csv", "paper_figures/figure_4_trajectories.pdf")
    dry = snakemake(workdir, "--dry-run", *targets, overrides=(overlay,))
    assert set(planned_jobs(dry.stdout)) == {"table_1_muse", "figure_4_trajectories"}, dry.stdout
    result = snakemake(workdir, *targets, overrides=(overlay,))
    assert result.returncode == 0, result.stderr[-3000:]

    from bilevel_unlearning.report.manifest import read_table_csv

    table = read_table_csv(workdir / "paper_figures/table_1_muse.csv")
    floor = 0.5 * evaluation(workdir, "muse_news", "target", 0)["metrics"]["knowmem_retain"]
    retain = evaluation(workdir, "muse_news", "target", 0)["metrics"]["knowmem_retain"]
    notes = (workdir / "paper_figures/table_1_muse.md").read_text()
    assert "epochs chosen by rule (lowest KnowMem D_f with KnowMem D_r within 50%" in notes
    for method in ("ga", "npo", "blur_npo"):
        metrics = {e: evaluation(workdir, "muse_news", method, e)["metrics"] for e in (1, 2)}
        allowed = [e for e in (1, 2) if abs(metrics[e]["knowmem_retain"] - retain) <= floor]
        chosen = min(allowed, key=lambda e: metrics[e]["knowmem_forget"]) if allowed else 2
        assert table[(method, "News:knowmem_forget")] == pytest.approx(
            100 * metrics[chosen]["knowmem_forget"]
        )
        assert f"{method} epoch {chosen}" in notes
