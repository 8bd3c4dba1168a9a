"""The sanity report's prompt format, table and checks on hand-made inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bilevel_unlearning.evaluation.muse import knowmem_prompts
from bilevel_unlearning.sanity.report import comparison, report_step, report_table


def test_knowmem_prompt_is_muses_few_shot_format() -> None:
    icl = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
    prompts = knowmem_prompts(icl, [{"question": "Q3?", "answer": "A3"}])
    assert prompts == [
        "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: "
    ]
    assert knowmem_prompts([], [{"question": "Q?", "answer": "A"}]) == ["Question: Q?\nAnswer: "]


RESULT = {
    "benchmark": "muse_news",
    "format": 2,
    "scores": {"target": {"knowmem_forget": 0.91234}, "retrain": {"knowmem_forget": 0.165}},
    "rows": [comparison("knowmem_forget", "target", "retrain")],
    "checks": {"gap >= 25": True, "retain close": False},
}


def test_report_table_puts_target_beside_oracle_and_lists_checks() -> None:
    table = report_table([RESULT])  # fractions, shown as T1 shows them (x100)
    assert "| muse_news | knowmem_forget | target | 91.23 | retrain | 16.50 |" in table
    tofu = {
        "benchmark": "tofu",
        "scores": {"full": {"rouge_forget05": 0.9336}, "retain95": {"rouge_forget05": 0.5}},
        "rows": [comparison("rouge_forget05", "full", "retain95")],
        "checks": {},
    }
    assert "| tofu | rouge_forget05 | full | 0.934 | retain95 | 0.500 |" in report_table([tofu])
    assert "- muse_news: gap >= 25: pass" in table
    assert "- muse_news: retain close: FAIL" in table


@pytest.mark.parametrize("second_check", [True, False])
def test_report_step_all_checks_pass_only_when_every_check_does(
    tmp_path: Path, second_check: bool
) -> None:
    result = {**RESULT, "checks": {"a": True, "b": second_check}}
    source = tmp_path / "muse_news.json"
    source.write_text(json.dumps(result))
    report_step([source], tmp_path / "report.json", tmp_path / "report.md")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["all_checks_pass"] is second_check
    assert report["benchmarks"] == [result]
    assert (tmp_path / "report.md").read_text() == report_table([result])


def test_a_sanity_result_of_an_older_format_is_refused_by_name(tmp_path: Path) -> None:
    source = tmp_path / "muse_news.json"
    source.write_text(json.dumps({**RESULT, "format": 1}))  # an older version's x100 scores
    with pytest.raises(ValueError, match=r"muse_news\.json: its metrics are in result format 1"):
        report_step([source], tmp_path / "report.json", tmp_path / "report.md")
    assert not (tmp_path / "report.json").exists()
