"""The plan the config expands into: runs, sweep points, reference rows and their oracles."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from bilevel_unlearning.runs import (
    evaluation_settings,
    evaluations,
    oracle_row,
    reference_models,
    run_name,
    sweep_points,
    unlearn_runs,
)

REPO = Path(__file__).resolve().parents[1]


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
