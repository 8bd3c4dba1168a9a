"""Tables and figures from result records: values, best marks, valid files, series per method."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.report import tables
from bilevel_unlearning.report.fig_gamma import plot_gamma
from bilevel_unlearning.report.fig_geometry import plot_geometry
from bilevel_unlearning.report.fig_tradeoff import plot_tradeoff
from bilevel_unlearning.report.fig_trajectories import plot_trajectories
from bilevel_unlearning.report.robustness import robustness_table
from bilevel_unlearning.report.style import display, method_colours

MUSE = {
    # row: (verbmem_forget, knowmem_forget, privleak, knowmem_retain) as T1 shows them (x100);
    # result JSONs hold fractions
    "target": (40.0, 90.0, -100.0, 90.0),
    "retrain": (20.0, 15.0, 0.0, 85.0),
    "npo": (10.0, 5.0, 30.0, 40.0),
    "blur_npo": (12.0, 12.0, -5.0, 80.0),
}


def muse_record(row: str, epoch: int, values: tuple[float, ...], benchmark: str = "muse_news"):
    names = list(catalog.MUSE_TABLE)
    return {
        "benchmark": benchmark,
        "run": row,
        "epoch": epoch,
        "metrics": {name: value / 100 for name, value in zip(names, values, strict=True)},
    }


@pytest.fixture
def muse_results() -> dict:
    records = [muse_record(r, 0 if r in ("target", "retrain") else 1, v) for r, v in MUSE.items()]
    return {(r["benchmark"], r["run"], r["epoch"]): r for r in records}


def test_muse_table_values_and_best_marks(muse_results: dict) -> None:
    rows = {"muse_news": [("target", 0), ("retrain", 0), ("npo", 1), ("blur_npo", 1)]}
    table = tables.muse_table(muse_results, rows, {"muse_news": 1})
    assert table.rows == ("target", "retrain", "npo", "blur_npo")
    verbmem, _, privleak, knowmem_r = table.columns
    assert table.values[("blur_npo", privleak)] == pytest.approx(-5.0)
    assert tables.best_rows(table, verbmem) == {"npo"}  # lower is better
    assert tables.best_rows(table, privleak) == {"blur_npo"}  # |-5| < |30|: closer to 0
    assert tables.best_rows(table, knowmem_r) == {"blur_npo"}  # higher is better
    markdown = tables.to_markdown(table)
    assert "| BLUR (NPO+GDR) | 12.0 | 12.0 | **-5.0** | **80.0** |" in markdown
    assert "| *Target* | 40.0 | 90.0 | -100.0 | 90.0 |" in markdown  # references never bold
    assert "VerbMem D_f ↓" in markdown and "PrivLeak →0" in markdown and "D_r ↑" in markdown
    latex = tables.to_latex(table)
    assert r"\textbf{-5.0}" in latex and r"$\rightarrow 0$" in latex
    rows = list(csv.reader(io.StringIO(tables.to_csv(table))))
    assert rows[0][0] == "row" and rows[4][0] == "blur_npo"
    assert [float(x) for x in rows[4][1:]] == pytest.approx(MUSE["blur_npo"])


def test_missing_result_shows_a_dash_and_both_corpora_sit_side_by_side(muse_results) -> None:
    books = muse_record("target", 0, (1.0, 2.0, 3.0, 4.0), "muse_books")
    results = {**muse_results, ("muse_books", "target", 0): books}
    refs = [("target", 0), ("retrain", 0)]
    rows = {"muse_news": [*refs, ("npo", 1)], "muse_books": [*refs, ("npo", 1)]}
    table = tables.muse_table(results, rows, {"muse_news": 1, "muse_books": 1})
    assert [c.group for c in table.columns] == ["News"] * 4 + ["Books"] * 4
    markdown = tables.to_markdown(table)
    assert "News VerbMem D_f ↓" in markdown and "Books KnowMem D_r ↑" in markdown
    assert "| NPO | **10.0** | **5.0** | **30.0** | **40.0** | – | – | – | – |" in markdown


def test_wmdp_table_notes_a_left_out_topic() -> None:
    record = {
        "benchmark": "wmdp",
        "run": "rmu",
        "epoch": 1,
        "metrics": {"wmdp_cyber_acc": 0.25, "mmlu_acc": 0.5},
    }
    rows = {"wmdp": [("original", 0), ("rmu", 1)]}
    table = tables.wmdp_table({("wmdp", "rmu", 1): record}, rows, {"wmdp": 1}, ["cyber"])
    assert [c.metric for c in table.columns] == ["wmdp_cyber_acc", "mmlu_acc"]
    markdown = tables.to_markdown(table)
    assert "| RMU | **25.0** | **50.0** |" in markdown  # scaled to x100
    assert "WMDP-Bio is not evaluated" in markdown


def test_a_method_with_its_own_table_epoch_reports_that_one() -> None:
    results = {
        ("wmdp", "original", 0): {"metrics": {"wmdp_bio_acc": 0.9, "mmlu_acc": 0.5}},
        ("wmdp", "rmu", 1): {"metrics": {"wmdp_bio_acc": 0.3, "mmlu_acc": 0.4}},
        ("wmdp", "rmu", 2): {"metrics": {"wmdp_bio_acc": 0.6, "mmlu_acc": 0.4}},
    }
    rows = {"wmdp": [("original", 0), ("rmu", 1)]}  # runs.table_rows: rmu at its own epoch
    table = tables.wmdp_table(results, rows, {"wmdp": 2}, ["bio"])
    markdown = tables.to_markdown(table)
    assert "| RMU | **30.0** | **40.0** |" in markdown
    assert "WMDP (epoch 2; rmu epoch 1)" in markdown


def test_tofu_table_reads_each_split_row_at_the_epoch_table_rows_names() -> None:
    def record(quality: float) -> dict:
        return {"metrics": {"forget_quality": quality, "model_utility": 0.5}}

    results = {
        ("tofu", "full-forget01", 0): record(1e-5),
        ("tofu", "retain-forget01", 0): record(1.0),
        ("tofu", "ga-forget01", 2): record(0.01),
        ("tofu", "ga-forget01", 1): record(0.5),  # not the row's table epoch: never read
        ("tofu", "npo-forget01", 1): record(0.2),
        ("tofu", "full-forget05", 0): record(1e-9),
        ("tofu", "ga-forget05", 2): record(0.03),
    }
    rows = {
        "tofu": [
            ("full-forget01", 0), ("retain-forget01", 0), ("full-forget05", 0),
            ("ga-forget01", 2), ("ga-forget05", 2), ("npo-forget01", 1),
        ]
    }  # fmt: skip
    table = tables.tofu_table(results, rows, {"tofu": 2}, ["forget01", "forget05"])
    assert table.rows == ("full", "retain", "ga", "npo")
    quality = {c.group: c for c in table.columns if c.metric == "forget_quality"}
    assert table.values[("ga", quality["forget01"])] == 0.01
    assert table.values[("ga", quality["forget05"])] == 0.03
    assert table.values[("npo", quality["forget01"])] == 0.2
    assert table.values[("npo", quality["forget05"])] is None  # not in rows: a dash
    assert table.values[("retain", quality["forget05"])] is None
    assert table.caption.startswith("TOFU (epoch 2; npo epoch 1)")


def test_tofu_quality_in_scientific_notation() -> None:
    assert tables.formatted(2.96e-13, 3) == "2.96e-13"
    assert tables.formatted(0.14, 3) == "0.140"
    assert tables.formatted(25.0, 1) == "25.0"


def is_png(path: Path) -> bool:
    import matplotlib.image

    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(path).size > 0


def check_outputs(stem: Path) -> None:
    assert is_png(stem.with_suffix(".png"))
    assert stem.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"


SWEEP = [
    ("npo_gdr", 0.5, "npo_gdr-gamma0.5"),
    ("npo_gdr", 2.0, "npo_gdr-gamma2.0"),
    ("blur_npo", 0.5, "blur_npo-gamma0.5"),
    ("blur_npo", 2.0, "blur_npo"),
]


@pytest.fixture
def sweep_results(muse_results: dict) -> dict:
    results = dict(muse_results)
    for index, (_, _, run) in enumerate(SWEEP):
        record = muse_record(run, 1, (5.0 + index, 10.0 - index, 2.0 * index, 70.0 + index))
        results[("muse_news", run, 1)] = record
    return results


def test_gamma_and_tradeoff_figures_have_one_series_per_method(
    sweep_results: dict, tmp_path: Path
) -> None:
    colours = method_colours(["npo", "npo_gdr", "blur_npo"])
    labels = plot_gamma(sweep_results, "muse_news", 1, SWEEP, colours, tmp_path / "f2")
    assert labels == [display("npo_gdr"), display("blur_npo"), "Target", "Retrain"]
    check_outputs(tmp_path / "f2")
    labels = plot_tradeoff(sweep_results, "muse_news", 1, SWEEP, colours, tmp_path / "f3")
    assert labels[:2] == [display("npo_gdr"), display("blur_npo")]
    check_outputs(tmp_path / "f3")


def test_same_data_gives_the_same_figure_bytes(sweep_results: dict, tmp_path: Path) -> None:
    colours = method_colours(["npo_gdr", "blur_npo"])
    for name in ("a", "b"):
        plot_gamma(sweep_results, "muse_news", 1, SWEEP, colours, tmp_path / name)
    for suffix in (".pdf", ".png"):
        assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()


def test_tofu_trajectories_follow_one_split_with_its_retain_oracle(tmp_path: Path) -> None:
    def record(quality: float) -> dict:
        return {"metrics": {"forget_quality": quality, "model_utility": 0.5}}

    results = {
        ("tofu", "full-forget05", 0): record(1e-6),
        ("tofu", "retain-forget05", 0): record(1.0),
    }
    results |= {("tofu", "ga-forget05", e): record(0.01 * e) for e in (1, 2)}
    colours = method_colours(["ga"])
    labels = plot_trajectories(
        results, "tofu", ["ga"], [1, 2], colours, tmp_path / "f4", "-forget05"
    )
    assert labels == ["GA", "Retain"]
    check_outputs(tmp_path / "f4")
    with pytest.raises(KeyError, match="no evaluation of full at epoch 0 on tofu"):
        plot_trajectories(results, "tofu", ["ga"], [1, 2], colours, tmp_path / "f4b")


def test_trajectory_and_geometry_figures(muse_results: dict, tmp_path: Path) -> None:
    results = dict(muse_results)
    for row in ("npo", "blur_npo"):
        results[("muse_news", row, 2)] = muse_record(row, 2, (1.0, 2.0, 3.0, 4.0))
    colours = method_colours(["npo", "blur_npo"])
    labels = plot_trajectories(
        results, "muse_news", ["npo", "blur_npo"], [1, 2], colours, tmp_path / "f4"
    )
    assert labels == ["NPO", display("blur_npo"), "Retrain"]
    check_outputs(tmp_path / "f4")
    logs = {}
    for run in ("blur_npo", "npo"):
        log = tmp_path / f"{run}.jsonl"
        entries = [
            {
                "step": s,
                "inner": -1.0 * s,
                "forget_sq": 10.0,
                "retain_sq": 1.0,
                "cosine": -0.3,
                "xi": 1.1,
            }
            for s in (1, 2, 3)
        ]
        log.write_text("".join(json.dumps(e) + "\n" for e in entries))
        logs[run] = log
    labels = plot_geometry(logs, colours, tmp_path / "f1")
    assert labels == [display("blur_npo"), "NPO"]
    check_outputs(tmp_path / "f1")


def test_missing_result_names_what_is_missing(muse_results: dict, tmp_path: Path) -> None:
    colours = method_colours(["npo_gdr", "blur_npo"])
    with pytest.raises(KeyError, match=r"npo_gdr-gamma0\.5 at epoch 1"):
        plot_gamma(muse_results, "muse_news", 1, SWEEP, colours, tmp_path / "f2")


def attacked(row: str, epoch: int, attack: str, metrics: dict, benchmark: str) -> dict:
    return {
        "benchmark": benchmark,
        "run": row,
        "epoch": epoch,
        "attack": attack,
        "format": catalog.RESULT_FORMAT,
        "metrics": metrics,
    }


@pytest.fixture
def robustness_results() -> dict:
    """WMDP bio accuracy after relearning 4 steps rises from 0.30 (original: 0.60)."""
    values = {
        ("original", 0): {"none": 0.60, "relearn_s4": 0.70, "quantize_int4": 0.58},
        ("rmu", 2): {"none": 0.30, "relearn_s4": 0.55, "quantize_int4": 0.40},
    }
    results = {}
    for (row, epoch), by_attack in values.items():
        for attack, bio in by_attack.items():
            metrics = {"wmdp_bio_acc": bio, "mmlu_acc": 0.5}
            results[("wmdp", row, epoch, attack)] = attacked(row, epoch, attack, metrics, "wmdp")
    return results


def test_robustness_table_reports_what_each_attack_recovered(robustness_results: dict) -> None:
    rows = {"wmdp": [("original", 0), ("rmu", 2)]}
    table = robustness_table(
        robustness_results, rows, ["relearn_s4", "quantize_int4"], ["bio"], {"wmdp": ["original"]}
    )
    parsed = list(csv.DictReader(io.StringIO(tables.to_csv(table))))
    header = ["row", "none", "relearn_s4", "recovered:relearn_s4", "quantize_int4"]
    assert list(parsed[0])[:5] == header
    rmu = {r["row"]: r for r in parsed}["wmdp:rmu:wmdp_bio_acc"]
    # the CSV holds what the table shows: accuracies x100, as T2
    assert float(rmu["relearn_s4"]) == pytest.approx(55.0)
    assert float(rmu["recovered:relearn_s4"]) == pytest.approx(25.0)
    assert float(rmu["recovered:quantize_int4"]) == pytest.approx(10.0)
    markdown = tables.to_markdown(table)
    # x100 as in T2, no best marks across rows of different metrics, references in italics
    assert "| WMDP · RMU · WMDP-Bio ↓ | 30.0 | 55.0 | 25.0 | 40.0 | 10.0 |" in markdown
    assert "| *WMDP · Original · MMLU ↑* | 50.0 | 50.0 | 0.0 | 50.0 | 0.0 |" in markdown
    assert "**" not in markdown.split("\n", 1)[1]
    assert "Relearn 4 steps" in tables.to_latex(table)


def test_plain_tables_ignore_attacked_results(robustness_results: dict, tmp_path: Path) -> None:
    paths = []
    for index, record in enumerate(robustness_results.values()):
        paths.append(tmp_path / f"{index}.json")
        paths[-1].write_text(json.dumps(record))
    plain = tables.load_results(paths)
    assert set(plain) == {("wmdp", "original", 0), ("wmdp", "rmu", 2)}
    assert plain[("wmdp", "rmu", 2)]["metrics"]["wmdp_bio_acc"] == 0.30
    assert len(tables.load_all_results(paths)) == 6


def test_relearning_figure(robustness_results: dict, tmp_path: Path) -> None:
    from bilevel_unlearning.report.fig_relearning import plot_relearning

    rows = {"wmdp": [("original", 0), ("rmu", 2)]}
    colours = method_colours(["rmu"])
    labels = plot_relearning(
        robustness_results,
        rows,
        {"wmdp": ["original"]},
        {"wmdp": [4]},
        ["bio"],
        colours,
        tmp_path / "f5",
    )
    assert labels == ["Original", "RMU"]
    check_outputs(tmp_path / "f5")
    del robustness_results[("wmdp", "rmu", 2, "relearn_s4")]
    with pytest.raises(KeyError, match=r"rmu \(relearn_s4\) at epoch 2"):
        plot_relearning(
            robustness_results, rows, {"wmdp": []}, {"wmdp": [4]}, ["bio"], colours, tmp_path / "f5"
        )


def test_a_result_of_an_older_format_is_refused_not_read_100_times_too_big(
    tmp_path: Path,
) -> None:
    old = muse_record("target", 0, (40.0, 90.0, -100.0, 90.0))
    old["metrics"] = {name: value * 100 for name, value in old["metrics"].items()}  # format 1
    path = tmp_path / "epoch_0.json"
    path.write_text(json.dumps({k: v for k, v in old.items() if k != "format"}))
    with pytest.raises(ValueError, match=r"epoch_0\.json: its metrics are in result format 1"):
        tables.load_results([path])


def test_seeds_are_gathered_into_mean_plus_minus_std_with_each_seed_in_the_csv() -> None:
    npo = {
        "own": (10.0, 5.0, 30.0, 40.0),
        "1": (14.0, 7.0, 20.0, 44.0),
        "2": (12.0, 9.0, 25.0, 42.0),
    }
    records = [muse_record("target", 0, MUSE["target"]), muse_record("retrain", 0, MUSE["retrain"])]
    records += [muse_record("npo" if s == "own" else f"npo-seed{s}", 1, v) for s, v in npo.items()]
    results = {(r["benchmark"], r["run"], r["epoch"]): r for r in records}
    rows = {
        "muse_news": [("target", 0), ("retrain", 0), ("npo", 1), ("npo-seed1", 1), ("npo-seed2", 1)]
    }
    table = tables.muse_table(results, rows, {"muse_news": 1})
    assert table.rows == ("target", "retrain", "npo")  # one row for three seeds
    verbmem = table.columns[0]
    assert table.values[("npo", verbmem)] == pytest.approx(12.0)  # mean of 10, 14, 12
    assert table.spread("npo", verbmem) == pytest.approx(2.0)  # sample std of 10, 14, 12
    assert table.spread("target", verbmem) is None  # a reference model: not unlearned, no seeds
    markdown = tables.to_markdown(table)
    # the only method: best in every column
    assert "| NPO | **12.0 ± 2.0** | **7.0 ± 2.0** | **25.0 ± 5.0** | **42.0 ± 2.0** |" in markdown
    assert "mean ± standard deviation over 3 seeds (the benchmark's own, 1, 2)" in markdown
    header, *body = list(csv.reader(io.StringIO(tables.to_csv(table))))
    npo_row = dict(zip(header, body[2], strict=True))
    assert float(npo_row["News:verbmem_forget"]) == pytest.approx(12.0)
    assert float(npo_row["News:verbmem_forget:std"]) == pytest.approx(2.0)
    seeds = [float(npo_row[f"News:verbmem_forget:seed={s}"]) for s in ("own", "1", "2")]
    assert seeds == pytest.approx([10.0, 14.0, 12.0])
    assert dict(zip(header, body[0], strict=True))["News:verbmem_forget:seed=own"] == ""


def test_heldout_relearning_is_read_on_the_heldout_items_before_and_after() -> None:
    """KnowMem per item: the attack lifts the two items it relearned to 1.0 and the held-out
    ones (items 2, 3) from 0.1 to 0.3: held-out Δ 20 points, same-set Δ much more."""
    before = [0.1, 0.1, 0.1, 0.1]
    after = {"relearn_s4": [1.0, 1.0, 0.3, 0.3], "relearn_heldout_s4": [1.0, 1.0, 0.3, 0.3]}
    results = {}
    for attack, scores in [("none", before), *after.items()]:
        metrics = {"knowmem_forget": sum(scores) / 4, "verbmem_forget": 0.5, "knowmem_retain": 0.6}
        record = attacked("npo", 1, attack, metrics, "muse_news")
        record["items"] = {
            "knowmem_forget": [{"rouge_l_f1": x} for x in scores],
            "verbmem_forget": [{"rouge_l_f1": 0.5}] * 2,
        }
        results[("muse_news", "npo", 1, attack)] = record
    split = {
        "rule": "by hand",
        "entities": 4,
        "attacker_entities": [0, 1],
        "items": {"knowmem_forget": 4, "verbmem_forget": 2},
        "heldout_items": {"knowmem_forget": [2, 3], "verbmem_forget": [1]},
    }
    table = robustness_table(
        results, {"muse_news": [("npo", 1)]}, list(after), [], {}, {"muse_news": {"forget": split}}
    )
    parsed = {r["row"]: r for r in csv.DictReader(io.StringIO(tables.to_csv(table)))}
    knowmem = parsed["muse_news:npo:knowmem_forget"]
    assert float(knowmem["recovered:relearn_s4"]) == pytest.approx(100 * (0.65 - 0.1))
    assert float(knowmem["relearn_heldout_s4"]) == pytest.approx(30.0)
    assert float(knowmem["recovered:relearn_heldout_s4"]) == pytest.approx(20.0)
    # a metric a split does not touch (retain) reads the same in both columns
    retain = parsed["muse_news:npo:knowmem_retain"]
    assert retain["relearn_heldout_s4"] == retain["relearn_s4"]
    assert "knowmem_forget 2 of 4, verbmem_forget 1 of 2 (2 of 4 entities relearned)" in (
        tables.to_markdown(table)
    )
    assert "Relearn 4 steps, held-out" in tables.to_markdown(table)
