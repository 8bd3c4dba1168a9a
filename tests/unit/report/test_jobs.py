"""Which results and settings feed each table and figure (report.jobs): the plan the report
rules are made from, checked on the shipped configs without running Snakemake."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, shipped_config

from bilevel_unlearning.report import jobs
from bilevel_unlearning.runs import eval_path, family, relearn_steps, table_rows


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_each_paper_table_reads_exactly_the_evaluations_table_rows_names(config: dict) -> None:
    tables = jobs.table_jobs(config)
    assert list(tables) == [
        "table_1_muse",
        "table_s1_muse_mia",
        "table_2_wmdp",
        "table_3_tofu",
        "table_4_robustness",
    ]
    muse = [b for b in config["benchmarks"] if family(b) == "muse"]
    expected = [
        eval_path(config["results_dir"], b, row, epoch)
        for b in muse
        for row, epoch in table_rows(config, b)
    ]
    assert tables["table_1_muse"].inputs == expected
    assert tables["table_1_muse"].settings["rows"] == {b: table_rows(config, b) for b in muse}
    assert "topics" not in tables["table_1_muse"].settings  # a WMDP change reruns T1 not
    assert tables["table_2_wmdp"].settings["topics"] == config["wmdp"]["topics"]
    assert tables["table_3_tofu"].settings["splits"] == config["tofu"]["forget_splits"]
    # a benchmark left out takes its table with it
    without = {**config, "benchmarks": ["muse_news", "tofu"]}
    assert "table_2_wmdp" not in jobs.table_jobs(without)


def test_robustness_outputs_are_a_part_of_their_own(config: dict) -> None:
    tables, figures = jobs.table_jobs(config), jobs.figure_jobs(config)
    paper = jobs.part_outputs(tables, figures, "paper")
    robustness = jobs.part_outputs(tables, figures, "robustness")
    assert "paper_figures/table_1_muse.tex" in paper
    assert "paper_figures/figure_4_trajectories.png" in paper
    assert set(robustness) == {
        *(f"paper_figures/table_4_robustness.{x}" for x in ("csv", "md", "tex")),
        *(f"paper_figures/figure_5_relearning.{x}" for x in ("pdf", "png")),
    }
    attacked = jobs.part_results(tables, figures, "robustness")
    assert any("/relearn_s8/" in f for f in attacked)
    assert not any("/relearn_s" in f for f in jobs.part_results(tables, figures, "paper"))
    steps = figures["figure_5_relearning"].settings["steps"]
    assert steps == {b: relearn_steps(config, b) for b in steps}
    unattacked = {**config, "robustness": None}
    none = jobs.part_outputs(
        jobs.table_jobs(unattacked), jobs.figure_jobs(unattacked), "robustness"
    )
    assert none == []


def test_trajectories_on_tofu_follow_the_first_split(config: dict) -> None:
    changed = copy.deepcopy(config)
    changed["figures"]["trajectories"] = "tofu"
    job = jobs.figure_jobs(changed)["figure_4_trajectories"]
    split = changed["tofu"]["forget_splits"][0]
    assert job.settings["suffix"] == f"-{split}"
    method = changed["unlearn"]["tofu"]["methods"][0]
    epoch = changed["evaluate"]["tofu"]["epochs"][0]
    results = config["results_dir"]
    assert eval_path(results, "tofu", f"{method}-{split}", epoch) in job.inputs
    assert eval_path(results, "tofu", f"retain-{split}", 0) in job.inputs  # the oracle line
    assert "suffix" not in jobs.figure_jobs(config)["figure_4_trajectories"].settings


def test_every_figure_knows_every_method_for_its_colours(config: dict) -> None:
    for job in jobs.figure_jobs(config).values():
        assert job.settings["all_methods"] == list(config["methods"])


def test_seeded_figures_read_every_seed_and_one_seed_keeps_its_settings(config: dict) -> None:
    plain = jobs.figure_jobs(config)
    seeded = jobs.figure_jobs({**config, "seeds": [0, 5]})
    for name in ("figure_2_gamma", "figure_4_trajectories"):
        assert "seeds" not in plain[name].settings  # one seed: the figure is not replanned
        assert seeded[name].settings["seeds"] == [None, 5]
        extra = set(seeded[name].inputs) - set(plain[name].inputs)
        assert extra and all("-seed5/" in path for path in extra)
        assert len(seeded[name].inputs) == 2 * len(plain[name].inputs) - len(
            [p for p in plain[name].inputs if p.endswith("epoch_0.json")]
        )


def test_a_line_gets_a_band_only_where_seeds_spread() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bilevel_unlearning.report.figures import plot_with_spread

    _, ax = plt.subplots()
    plot_with_spread(ax, [0, 1], [(1.0, 0.0), (2.0, 0.0)], color="C0")
    assert len(ax.collections) == 0
    plot_with_spread(ax, [0, 1], [(1.0, 0.0), (2.0, 0.5)], color="C1")
    (band,) = ax.collections
    assert band.get_paths()[0].vertices[:, 1].max() == 2.5
    plt.close("all")


def test_the_reference_comparison_reads_evaluations_not_step_logs() -> None:
    """The paper config's part reads F1's train_log.jsonl files too; the comparison with
    published numbers read them as JSON and stopped (found by the rehearsal)."""
    paper = shipped_config("paper.yaml")
    used = jobs.part_results(jobs.table_jobs(paper), jobs.figure_jobs(paper), "paper")
    logs = [p for p in used if p.endswith("train_log.jsonl")]
    assert logs, "F1 reads step logs: the case this test guards"
    chosen = jobs.evaluation_results(used)
    assert not set(logs) & set(chosen)
    assert set(used) - set(chosen) == set(logs)
