"""The benchmark registry: what sets each benchmark apart, asked instead of its name."""

from __future__ import annotations

import pytest

from bilevel_unlearning.benchmarks import BENCHMARKS, benchmark
from bilevel_unlearning.config import load_schema
from bilevel_unlearning.runs import ORACLE_ROLE, START_ROLE, oracle_row, row_split


def test_every_schema_benchmark_has_an_entry_and_unknown_names_are_listed() -> None:
    assert set(BENCHMARKS) == set(load_schema()["$defs"]["benchmark_name"]["enum"])
    with pytest.raises(ValueError, match="unknown benchmark 'muse_new': one of muse_news"):
        benchmark("muse_new")


def test_what_sets_each_apart() -> None:
    assert benchmark("muse_books").family == "muse" and benchmark("muse_books").label == "Books"
    assert (START_ROLE["tofu"], ORACLE_ROLE["tofu"], ORACLE_ROLE["wmdp"]) == (
        "full",
        "retain",
        None,
    )
    assert row_split("tofu", "npo-forget05") == "forget05" and row_split("muse_news", "npo") is None
    assert oracle_row("tofu", "npo-forget05") == "retain-forget05"
    assert oracle_row("wmdp", "rmu") is None and oracle_row("muse_news", "retrain") is None
