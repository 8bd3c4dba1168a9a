"""Checkpoint selection by rule: the chosen epoch on hand-made per-epoch metrics."""

from __future__ import annotations

import copy

import pytest
from conftest import shipped_config

from bilevel_unlearning.report.jobs import table_jobs, trajectories_jobs
from bilevel_unlearning.report.selection import (
    choose_epoch,
    rule_text,
    select_rows,
    selection_notes,
)

RULE = {
    "metric": "knowmem_forget",
    "direction": "min",
    "constraint": {"metric": "knowmem_retain", "within": 0.05, "of": "start"},
}


def results_of(rows: dict) -> dict:
    """(benchmark, row, epoch) -> a result with these fractions (as evaluators store them)."""
    return {
        ("muse_news", row, epoch): {"metrics": {"knowmem_forget": f, "knowmem_retain": r}}
        for (row, epoch), (f, r) in rows.items()
    }


# target's KnowMem D_r is 0.50: epochs within 5% (relative) keep it in [0.475, 0.525]
RESULTS = results_of(
    {
        ("target", 0): (0.60, 0.50),
        ("npo", 1): (0.30, 0.49),  # allowed
        ("npo", 2): (0.10, 0.48),  # allowed, lowest D_f: chosen
        ("npo", 3): (0.00, 0.40),  # lower D_f, but D_r fell 20%: excluded
        ("ga", 1): (0.00, 0.20),
        ("ga", 2): (0.00, 0.10),  # no epoch keeps D_r: the table epoch
        ("simnpo", 1): (0.20, 0.50),
        ("simnpo", 2): (0.20, 0.51),  # a tie: the earlier epoch
    }
)


def test_the_rule_picks_the_best_allowed_epoch_and_ties_go_earlier() -> None:
    assert choose_epoch(RESULTS, "muse_news", "npo", [1, 2, 3], RULE, 3).epoch == 2
    unconstrained = {"metric": "knowmem_forget", "direction": "min"}
    assert choose_epoch(RESULTS, "muse_news", "npo", [1, 2, 3], unconstrained, 1).epoch == 3
    assert choose_epoch(RESULTS, "muse_news", "simnpo", [1, 2], RULE, 2).epoch == 1
    highest = {"metric": "knowmem_retain", "direction": "max"}
    assert choose_epoch(RESULTS, "muse_news", "npo", [1, 2, 3], highest, 3).epoch == 1
    none = choose_epoch(RESULTS, "muse_news", "ga", [1, 2], RULE, 2)
    assert (none.epoch, none.met) == (2, False)


def test_selected_rows_keep_references_and_note_each_choice() -> None:
    listed = {
        "muse_news": [("target", 0), ("npo", 1), ("npo", 2), ("npo", 3), ("ga", 1), ("ga", 2)]
    }
    rows, choices = select_rows(
        RESULTS, listed, {"muse_news": RULE}, {"muse_news": {"npo": 3, "ga": 2}}
    )
    assert rows == {"muse_news": [("target", 0), ("npo", 2), ("ga", 2)]}
    (note,) = selection_notes(choices, {"muse_news": RULE})
    assert rule_text(RULE) in note
    assert "lowest KnowMem D_f with KnowMem D_r within 5% of the start model" in note
    assert "npo epoch 2, ga epoch 2 (none met the constraint: table epoch)" in note
    # without a rule nothing is chosen
    assert select_rows(RESULTS, listed, {}, {}) == (listed, {})


def test_a_missing_evaluation_is_named() -> None:
    with pytest.raises(KeyError, match="npo at epoch 4"):
        choose_epoch(RESULTS, "muse_news", "npo", [4], RULE, 4)


def test_under_a_rule_the_tables_read_every_evaluated_epoch() -> None:
    config = copy.deepcopy(shipped_config())
    plain = table_jobs(config)["table_1_muse"]
    config["evaluate"]["muse_news"]["select"] = RULE
    job = table_jobs(config)["table_1_muse"]
    news = job.settings["rows"]["muse_news"]
    assert ("npo", 1) in news and ("npo", 2) in news and ("target", 0) in news
    assert len(job.inputs) > len(plain.inputs)
    assert job.settings["select"] == {"muse_news": RULE}
    assert job.settings["fallback_epochs"]["muse_news"]["npo"] == 2
    # the other benchmark of the table reads its table epoch alone
    assert ("npo", 1) not in job.settings["rows"]["muse_books"]
    figure = trajectories_jobs(config, "muse_news")["figure_4_trajectories"]
    assert figure.settings["select"] == RULE
