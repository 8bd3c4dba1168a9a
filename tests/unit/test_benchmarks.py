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


def test_every_per_family_registry_covers_every_family() -> None:
    """Adding a benchmark family means one entry in each of these; this names any left out."""
    from bilevel_unlearning import metric_catalog
    from bilevel_unlearning.data import hub, miniature
    from bilevel_unlearning.evaluation.run import EVALUATORS
    from bilevel_unlearning.plan import FORGET_COUNTERS
    from bilevel_unlearning.report.fig_trajectories import PANELS
    from bilevel_unlearning.sanity.run import PROBES
    from bilevel_unlearning.unlearn.run import UNLEARN_DATA

    families = {b.family for b in BENCHMARKS.values()}
    with_topics = {b.family for b in BENCHMARKS.values() if b.topics}
    registries = {
        "evaluation.run.EVALUATORS": set(EVALUATORS),
        "unlearn.run.UNLEARN_DATA": set(UNLEARN_DATA),
        "plan.FORGET_COUNTERS": set(FORGET_COUNTERS),
        "data.miniature.BUILDERS": set(miniature.BUILDERS),
        "data.hub.SPECS": set(hub.SPECS),
        "sanity.run.PROBES": set(PROBES),
        "report.fig_trajectories.PANELS": set(PANELS),
        "metric_catalog.PAPER_TABLES": {f for f, _ in metric_catalog.PAPER_TABLES.values()},
        # a family with topics reads its topics' metrics instead
        "metric_catalog.ROBUSTNESS_METRICS": set(metric_catalog.ROBUSTNESS_METRICS) | with_topics,
        "metric_catalog.RELEARNING_PANELS": set(metric_catalog.RELEARNING_PANELS) | with_topics,
    }
    missing = {name: families - keys for name, keys in registries.items() if families - keys}
    assert not missing
    assert all(set(registry) <= families for registry in registries.values())


def test_robustness_metrics_of_a_benchmark_with_topics_are_its_topics_then_mmlu() -> None:
    from bilevel_unlearning.metric_catalog import relearning_panels, robustness_metrics

    assert robustness_metrics("wmdp", ["cyber"]) == ("wmdp_cyber_acc", "mmlu_acc")
    assert relearning_panels("wmdp", ["bio", "cyber"]) == ("wmdp_bio_acc", "wmdp_cyber_acc")
    assert relearning_panels("muse_books", []) == ("knowmem_forget",)
    assert robustness_metrics("tofu", [])[-1] == "model_utility"
