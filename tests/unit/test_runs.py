"""The plan the config expands into: runs, sweep points, reference rows and their oracles."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, shipped_config

from bilevel_unlearning.runs import (
    attack_names,
    attack_settings,
    attacked_benchmarks,
    attacked_evaluations,
    attacked_rows,
    evaluation_settings,
    evaluations,
    oracle_row,
    reference_models,
    run_name,
    sweep_points,
    table_epoch,
    table_rows,
    unlearn_runs,
)


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_run_names() -> None:
    assert run_name("blur_npo") == "blur_npo"
    assert run_name("blur_npo", 0.25) == "blur_npo-gamma0.25"
    assert run_name("npo_gdr", 4.0, "forget05") == "npo_gdr-gamma4.0-forget05"


def test_sweep_points_that_agree_to_many_digits_keep_their_own_runs(config: dict) -> None:
    """{gamma:g} gave both 'gamma4': one run silently replaced the other."""
    close = copy.deepcopy(config)
    close["sweeps"]["muse_news"]["gamma"] = [4.0, 4.0000001]
    runs = unlearn_runs(close, "muse_news")
    assert runs["blur_npo-gamma4.0"].params["gamma"] == 4.0
    assert runs["blur_npo-gamma4.0000001"].params["gamma"] == 4.0000001
    assert len(runs) == len(close["unlearn"]["muse_news"]["methods"]) + 3 * 2


def test_two_runs_with_one_name_are_an_error(config: dict) -> None:
    twice = copy.deepcopy(config)
    twice["sweeps"]["muse_news"]["gamma"] = [0.5, 0.5]  # the schema rejects this first
    with pytest.raises(ValueError, match=r"two runs are named 'npo_gdr-gamma0\.5'"):
        unlearn_runs(twice, "muse_news")


def test_sweep_reuses_plain_runs_and_overrides_gamma(config: dict) -> None:
    points = sweep_points(config, "muse_news")
    assert len(points) == 3 * 3
    assert ("blur_npo", 1.0, "blur_npo") in points  # its own gamma: the plain run
    runs = unlearn_runs(config, "muse_news")
    assert runs["blur_npo-gamma0.25"].params["gamma"] == 0.25
    assert runs["blur_npo-gamma0.25"].params["rule"] == "blur"
    assert runs["blur_npo"].params["gamma"] == 1.0
    listed = config["unlearn"]["muse_news"]["methods"]
    assert len(runs) == len(listed) + 6
    assert sweep_points(config, "tofu") == []


def test_a_swept_method_not_run_plainly_gets_its_own_gamma_point(config: dict) -> None:
    changed = copy.deepcopy(config)
    changed["unlearn"]["muse_news"]["methods"] = ["ga"]
    names = {name for _, _, name in sweep_points(changed, "muse_news")}
    assert "blur_npo-gamma1.0" in names
    assert "blur_npo-gamma1.0" in unlearn_runs(changed, "muse_news")


def test_tofu_runs_per_split_with_their_oracle(config: dict) -> None:
    runs = unlearn_runs(config, "tofu")
    assert runs["npo-forget05"].settings["retain_split"] == "retain95"
    assert runs["npo-forget10"].settings["forget_split"] == "forget10"
    refs = reference_models(config, "tofu")
    assert refs == {
        "full-forget05": "full",
        "retain-forget05": "retain95",
        "full-forget10": "full",
        "retain-forget10": "retain90",
    }
    assert oracle_row("tofu", "npo-forget10") == "retain-forget10"
    assert oracle_row("tofu", "retain-forget10") is None
    assert evaluation_settings(config, "tofu", "npo-forget10")["forget_split"] == "forget10"


def test_reference_rows_and_oracles(config: dict) -> None:
    assert reference_models(config, "muse_news") == {"target": "target", "retrain": "retrain"}
    assert reference_models(config, "wmdp") == {"original": "original"}
    assert oracle_row("muse_books", "npo") == "retrain"
    assert oracle_row("muse_books", "target") == "retrain"
    assert oracle_row("muse_books", "retrain") is None
    assert oracle_row("wmdp", "rmu") is None
    rows = evaluations(config, "muse_news")
    assert ("target", 0) in rows and ("retrain", 0) in rows
    assert ("blur_npo-gamma4.0", 2) in rows and ("blur_npo", 1) in rows


# -- the paper config resolves to the authors' settings (docs/paper_settings.md has sources) ----


@pytest.fixture(scope="module")
def paper() -> dict:
    return shipped_config("paper.yaml")


def resolved(paper: dict, benchmark: str, run: str) -> tuple[dict, object]:
    """A run's method parameters and its loop settings, as the unlearn job builds them."""
    from bilevel_unlearning.unlearn.run import loop_settings

    found = unlearn_runs(paper, benchmark)[run]
    seed = found.settings.get("seed", paper["seed"])
    return dict(found.params), loop_settings(found.params, found.settings, seed)


def test_paper_muse_blur_is_the_authors_npo_form_unclipped_at_seed_42(paper: dict) -> None:
    params, loop = resolved(paper, "muse_news", "blur_npo")
    assert (params["beta"], params["npo_form"], params["rule"]) == (0.15, "muse_logits", "blur")
    assert (loop.learning_rate, loop.clip_norm, loop.seed, loop.batch_size) == (2.5e-5, None, 42, 4)
    books, books_loop = resolved(paper, "muse_books", "blur_npo")
    assert books["beta"] == 0.15 and books_loop.learning_rate == 1e-5


def test_paper_muse_baselines_are_clipped_in_musebench_forms(paper: dict) -> None:
    params, loop = resolved(paper, "muse_news", "npo_klr")
    assert (params["beta"], params["npo_form"], params["kl_form"]) == (
        0.1,
        "muse_logits",
        "raw_logits",
    )
    assert (loop.learning_rate, loop.clip_norm, loop.seed) == (1e-5, 1.0, 42)
    tv, tv_loop = resolved(paper, "muse_news", "task_vector")
    assert (tv["negation"], tv_loop.schedule, tv_loop.epochs) == (5.0, "cosine", 10)
    assert paper["evaluate"]["muse_news"]["method_table_epochs"] == {
        "simnpo": 10,
        "task_vector": 10,
    }
    simnpo = {b: resolved(paper, b, "simnpo")[0] for b in ("muse_news", "muse_books")}
    assert (simnpo["muse_news"]["beta"], simnpo["muse_news"]["delta"]) == (0.7, 0.07)
    assert (simnpo["muse_books"]["beta"], simnpo["muse_books"]["delta"]) == (0.75, 0.075)
    assert simnpo["muse_news"]["gamma"] == 0.1  # the retain weight


def test_paper_tofu_keeps_the_standard_forms_and_warms_up_one_epoch_per_split(paper: dict) -> None:
    params, loop = resolved(paper, "tofu", "blur_npo-forget05")
    assert params.get("npo_form", "sequence") == "sequence" and params["beta"] == 0.1
    assert (loop.batch_size, loop.warmup_epochs, loop.seed, loop.schedule) == (32, 1, 0, "linear")
    rmu, _ = resolved(paper, "tofu", "rmu_tofu-forget05")
    assert (rmu["trainable"], rmu["steering_coefficient"], rmu["layers"]) == ("all", 2.0, [7])
    settings = unlearn_runs(paper, "tofu")["ga-forget01"].settings
    assert settings["system_prompt"] == "You are a helpful assistant."
    assert settings["chat_date"] == "10 Apr 2025"


def test_paper_wmdp_stops_after_the_authors_150_batches_at_seed_42(paper: dict) -> None:
    params, loop = resolved(paper, "wmdp", "blur_rmu")
    assert (params["alpha"], params["steering_coefficient"]) == (800.0, 6.5)
    assert (loop.max_steps_per_epoch, loop.batch_size, loop.seed) == (150, 4, 42)
    assert paper["muse"]["privleak_max_length"] is None  # MUSE never truncates Min-K% texts


def test_attacks_are_named_by_their_size(config: dict) -> None:
    assert attack_names(config) == ["relearn_s8", "relearn_heldout_s8", "quantize_int4"]
    plain = copy.deepcopy(config)
    plain["robustness"]["relearn"]["heldout"] = False
    assert attack_names(plain) == ["relearn_s8", "quantize_int4"]
    assert attacked_benchmarks(config) == ["muse_news", "tofu", "wmdp"]
    none = {**config, "robustness": None}
    assert attack_names(none) == [] and attacked_benchmarks(none) == []


def test_attacked_rows_are_the_table_rows_at_their_table_epoch(config: dict) -> None:
    changed = copy.deepcopy(config)
    changed["evaluate"]["muse_news"]["method_table_epochs"] = {"npo": 1}
    rows = attacked_rows(changed, "muse_news")
    assert rows[:2] == [("target", 0), ("retrain", 0)]
    assert ("npo", 1) in rows and ("ga", 2) in rows
    assert table_epoch(changed, "muse_news", "npo") == 1
    assert table_epoch(changed, "muse_news", "ga") == 2 == table_epoch(changed, "muse_news")
    assert not any("gamma" in row for row, _ in rows)  # never the sweep points
    tofu = attacked_rows(config, "tofu")
    assert tofu == [
        ("full-forget05", 0),
        ("retain-forget05", 0),
        ("ga-forget05", 2),
        ("npo-forget05", 2),
        ("blur_npo-forget05", 2),
    ]
    no_references = copy.deepcopy(config)
    no_references["robustness"]["benchmarks"]["wmdp"] = {"references": False}
    assert attacked_rows(no_references, "wmdp") == [("rmu", 2), ("blur_rmu", 2)]
    every = attacked_evaluations(config, "wmdp")
    assert len(every) == 3 * 3 and ("original", "relearn_heldout_s8", 0) in every


def test_attack_settings_merge_the_benchmark_recipe_over_the_shared_one(config: dict) -> None:
    settings = attack_settings(config, "tofu", "relearn_s8", "npo-forget05")
    assert settings["kind"] == "relearn" and settings["steps"] == 8
    assert settings["max_length"] == 64  # tofu's own
    assert settings["learning_rate"] == config["robustness"]["relearn"]["learning_rate"]
    assert settings["forget_split"] == "forget05"
    assert attack_settings(config, "wmdp", "relearn_s8", "rmu")["topics"] == ["bio", "cyber"]
    quantize = attack_settings(config, "muse_news", "quantize_int4", "npo")
    assert quantize == {"kind": "quantize", "bits": 4, "group_size": 32, "backend": "rtn"}
    # the held-out attack relearns with the same recipe; the switch itself is no setting of
    # either, so turning it on reruns no plain relearning
    heldout = attack_settings(config, "tofu", "relearn_heldout_s8", "npo-forget05")
    assert heldout == {**settings, "kind": "relearn_heldout"}
    assert "heldout" not in settings


def test_heldout_splits_keep_an_entitys_records_together(config: dict) -> None:
    from bilevel_unlearning.runs import heldout_part, heldout_settings, heldout_split_path

    sizes = config["miniature"]
    muse = heldout_settings(config, "muse_news", heldout_part("muse_news", "npo"))
    # a miniature person: one prose document and one exchange per fact
    assert muse == {"group_size": 1 + sizes["muse"]["facts_per_entity"]}
    part = heldout_part("tofu", "npo-forget05")
    assert heldout_settings(config, "tofu", part) == {
        "group_size": sizes["tofu"]["qa_per_author"],
        "forget_split": "forget05",
    }
    assert heldout_split_path("r", "tofu", part) == "r/tofu/attack/heldout_split/forget05.json"
    hub = {**config, "source": "hub"}  # TOFU's 20 QA pairs per author; a MUSE article alone
    assert heldout_settings(hub, "tofu", "forget05")["group_size"] == 20
    assert heldout_settings(hub, "muse_news", "forget") == {"group_size": 1}
    assert heldout_settings(hub, "wmdp", "forget") == {"group_size": 1, "topics": ["bio", "cyber"]}


def test_table_rows_are_the_references_and_each_method_at_its_table_epoch(config: dict) -> None:
    changed = copy.deepcopy(config)
    changed["evaluate"]["muse_news"]["method_table_epochs"] = {"task_vector": 1}
    rows = dict(table_rows(changed, "muse_news"))
    assert rows["target"] == rows["retrain"] == 0
    assert rows["task_vector"] == 1 and rows["blur_npo"] == 2
    assert not any("gamma" in row for row in rows)  # the sweep feeds F2/F3 only
    tofu = table_rows(config, "tofu")
    assert ("npo-forget05", 2) in tofu and ("npo-forget10", 2) in tofu
    assert len(tofu) == 2 * 2 + 5 * 2  # full and retain per split, 5 methods per split


def test_attack_names_are_made_and_read_back_in_one_place() -> None:
    from bilevel_unlearning.runs import attack_kind, attack_name, attack_size

    for kind, size in (("relearn", 8), ("relearn", 150), ("relearn_heldout", 8), ("quantize", 4)):
        name = attack_name(kind, size)
        assert (attack_kind(name), attack_size(name)) == (kind, size)
    assert attack_name("relearn", 8) == "relearn_s8"
    assert attack_name("quantize", 4) == "quantize_int4"
    assert attack_name("relearn_heldout", 8) == "relearn_heldout_s8"


def test_seeds_repeat_every_run_and_keep_the_own_seeds_names(config: dict) -> None:
    from bilevel_unlearning.runs import row_split, seedless_row

    assert run_name("ga_gdr", split="forget05", seed=3) == "ga_gdr-seed3-forget05"
    assert run_name("npo_gdr", 4.0, seed=1) == "npo_gdr-gamma4.0-seed1"
    single = unlearn_runs(config, "tofu")
    seeded = unlearn_runs({**config, "seeds": [0, 7]}, "tofu")  # 0 is the config's own seed
    assert list(seeded)[: len(single)] == list(single)  # the own seed: same names, settings
    assert all(seeded[name] == run for name, run in single.items())
    extra = seeded["npo-seed7-forget05"]
    assert extra.settings["seed"] == 7 and extra.seed == 7
    assert extra.settings["retain_split"] == "retain95"
    assert row_split("tofu", "npo-seed7-forget05") == "forget05"
    assert seedless_row("npo-seed7-forget05") == "npo-forget05"
    assert len(seeded) == 2 * len(single)
    rows = table_rows({**config, "seeds": [0, 7]}, "muse_news")
    assert ("npo", 2) in rows and ("npo-seed7", 2) in rows
    # a benchmark with its own unlearning seed (the paper's 42 on MUSE) keeps it plain
    own = {**config, "seeds": [42, 43]}
    own["unlearn"] = {
        **config["unlearn"],
        "muse_news": {**config["unlearn"]["muse_news"], "seed": 42},
    }
    names = list(unlearn_runs(own, "muse_news"))
    assert "npo" in names and "npo-seed43" in names and "npo-seed42" not in names
