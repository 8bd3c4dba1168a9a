"""Seed bands and the expected-table comparison: band arithmetic by hand, the four statuses,
a file round trip, and a regression that leaves the band."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest

from bilevel_unlearning.report.bands import (
    BAND_SDS,
    Band,
    band_of,
    band_path,
    cell_status,
    read_bands,
    table_bands,
    write_bands,
)
from bilevel_unlearning.report.manifest import compare_expected, read_table_csv, tolerance


def test_band_is_mean_plus_minus_k_sd_widened_by_the_tolerance() -> None:
    values = [10.0, 12.0, 11.0, 13.0, 9.0]
    band = band_of(values, atol=0.5)
    sd = statistics.stdev(values)  # sqrt(2.5) = 1.5811...
    assert band.mean == 11.0 and band.std == pytest.approx(math.sqrt(2.5))
    assert band.low == pytest.approx(11.0 - BAND_SDS * sd - 0.5)
    assert band.high == pytest.approx(11.0 + BAND_SDS * sd + 0.5)
    assert band.seeds == 5


def test_seeds_that_agree_give_the_value_plus_minus_tolerance() -> None:
    band = band_of([-100.0] * 5, atol=5.0)
    assert (band.low, band.high, band.std) == (-105.0, -95.0, 0.0)


def test_a_band_is_never_narrower_than_the_seeds_own_range() -> None:
    # one outlier among five: k sd from the mean still covers it here; check the min/max rule
    band = band_of([0.0, 0.0, 0.0, 0.0, 100.0], atol=0.0)
    assert band.low <= 0.0 and band.high >= 100.0


def test_log_cells_get_their_band_in_log10() -> None:
    band = band_of([1e-4, 1e-2], atol=0.0, in_log=True)  # logs -4 and -2: mean -3, sd sqrt(2)
    assert band.mean == pytest.approx(1e-3)
    assert math.log10(band.low) == pytest.approx(-3 - BAND_SDS * math.sqrt(2))
    assert math.log10(band.high) == pytest.approx(-3 + BAND_SDS * math.sqrt(2))


@pytest.mark.parametrize(
    ("produced", "expected", "band", "status"),
    [
        (50.0, 50.0, None, "equal"),
        (None, None, None, "equal"),
        (50.0 + 1e-12, 50.0, Band(5, 50.0, 1.0, 45.0, 55.0), "band"),
        (56.0, 50.0, Band(5, 50.0, 1.0, 45.0, 55.0), "outside"),
        (53.0, 50.0, None, "tolerance"),  # no band committed: the catalog's tolerance, 5
        (56.0, 50.0, None, "outside"),
        (None, 50.0, Band(5, 50.0, 1.0, 45.0, 55.0), "outside"),
    ],
)
def test_cell_status(produced, expected, band, status) -> None:
    assert cell_status(produced, expected, band, atol=5.0, in_log=False) == status


def write_table(path: Path, rows: dict[str, float | None]) -> None:
    lines = ["row,News:knowmem_forget"]
    lines += [f"{row},{'' if v is None else repr(v)}" for row, v in rows.items()]
    path.write_text("\n".join(lines) + "\n")


def test_bands_round_trip_through_their_file(tmp_path: Path) -> None:
    seeds = []
    for i, value in enumerate([20.0, 22.0, 21.0]):
        write_table(tmp_path / f"s{i}.csv", {"npo": value, "ga": None if i == 1 else 3.0})
        seeds.append(read_table_csv(tmp_path / f"s{i}.csv"))
    bands = table_bands(seeds, tolerance)
    path = band_path(tmp_path / "table_1_muse.csv")
    assert path.name == "table_1_muse.band.csv"
    write_bands(path, bands)
    assert read_bands(path) == bands
    ga = bands[("ga", "News:knowmem_forget")]  # undefined in one seed: a band of the others
    assert ga.seeds == 2 and ga.std == 0.0 and (ga.low, ga.high) == (-2.0, 8.0)
    npo = bands[("npo", "News:knowmem_forget")]
    assert npo.seeds == 3 and npo.low == pytest.approx(21.0 - BAND_SDS - 5.0)


def test_comparison_reports_each_status_and_fails_only_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unpinned machine (ARM, no AVX2): the bands judge."""
    from bilevel_unlearning.report import manifest

    monkeypatch.setattr(manifest, "pinned_here", lambda: False)
    expected, produced = tmp_path / "expected", tmp_path / "produced"
    expected.mkdir(), produced.mkdir()
    write_table(expected / "table_1_muse.csv", {"npo": 20.0, "ga": 3.0, "blur_npo": 40.0})
    seeds = [{("npo", "News:knowmem_forget"): v} for v in (20.0, 26.0, 14.0)]
    write_bands(band_path(expected / "table_1_muse.csv"), table_bands(seeds, tolerance))
    # npo moved by 8 (inside its band), ga bit for bit, blur_npo by 3 (no band: tolerance 5)
    write_table(produced / "table_1_muse.csv", {"npo": 28.0, "ga": 3.0, "blur_npo": 43.0})
    out = tmp_path / "comparison.md"
    assert compare_expected([produced / "table_1_muse.csv"], expected, out)
    text = out.read_text()
    assert "1 bit for bit, 1 within the seed band, 1 within tolerance" in text
    # a regression: npo far outside its band fails the comparison and is listed
    write_table(produced / "table_1_muse.csv", {"npo": 80.0, "ga": 3.0, "blur_npo": 43.0})
    assert not compare_expected([produced / "table_1_muse.csv"], expected, out)
    assert "| npo | News:knowmem_forget | 80.0 | 20.0 |" in out.read_text()


def test_a_pinned_machine_fails_on_cells_that_moved_even_inside_their_bands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bilevel_unlearning.report import manifest

    expected, produced = tmp_path / "expected", tmp_path / "produced"
    expected.mkdir(), produced.mkdir()
    write_table(expected / "table_1_muse.csv", {"npo": 20.0, "ga": 3.0, "blur_npo": 40.0})
    write_table(produced / "table_1_muse.csv", {"npo": 21.0, "ga": 3.0, "blur_npo": 40.0})
    out = tmp_path / "comparison.md"
    for pinned, verdict in ((True, "**1 cells moved although"), (False, "1 cells differ")):
        monkeypatch.setattr(manifest, "pinned_here", lambda pinned=pinned: pinned)
        ok = manifest.compare_expected([produced / "table_1_muse.csv"], expected, out)
        assert ok is not pinned  # within tolerance, but on a pinned machine a failure
        assert verdict in out.read_text()
        assert ("| npo | News:knowmem_forget | 21.0 | 20.0 |" in out.read_text()) is pinned
        report = json.loads(out.with_suffix(".json").read_text())
        assert (report["pinned"], report["moved"]) == (pinned, 1)
    write_table(produced / "table_1_muse.csv", {"npo": 20.0, "ga": 3.0, "blur_npo": 40.0})
    monkeypatch.setattr(manifest, "pinned_here", lambda: True)
    manifest.compare_expected([produced / "table_1_muse.csv"], expected, out)
    assert "every cell is bit for bit the reference's" in out.read_text()


def test_published_numbers_are_placed_against_the_runs_seed_band(tmp_path: Path) -> None:
    from bilevel_unlearning.report import reproduction

    def record(row: str, value: float) -> dict:
        return {"metrics": {"model_utility": value, "forget_quality": None}}

    results = {
        ("tofu", "npo-forget05", 2): record("npo-forget05", 0.44),
        ("tofu", "npo-seed1-forget05", 2): record("npo-seed1-forget05", 0.46),
        ("tofu", "npo-seed2-forget05", 2): record("npo-seed2-forget05", 0.45),
        ("tofu", "ga-forget05", 2): record("ga-forget05", 0.50),
    }
    references = {
        "sources": {"ou": "open-unlearning"},
        "entries": [
            {"benchmark": "tofu", "row": "npo-forget05", "metric": "model_utility",
             "value": 0.45, "source": "ou"},
            {"benchmark": "tofu", "row": "npo-forget05", "metric": "model_utility",
             "value": 0.60, "source": "ou"},
            {"benchmark": "tofu", "row": "ga-forget05", "metric": "model_utility",
             "value": 0.53, "source": "ou"},
            {"benchmark": "tofu", "row": "npo-forget05", "metric": "forget_quality",
             "value": 0.14, "source": "ou"},
        ],
    }  # fmt: skip
    lines = reproduction.published_lines(results, references, {"tofu": 2})
    reproduction.write_reproduction(lines, reproduction.PUBLISHED_INTRO, tmp_path / "t")
    table = (tmp_path / "t.md").read_text().splitlines()
    # mean 0.45, sd 0.01: the band is 0.45 +- 0.04
    assert (
        "| tofu | npo-forget05 | model_utility | 0.45 | 0.45 ± 0.01 | +0 | 0.41 … 0.49 | yes "
        "| open-unlearning |" in table[6]
    )
    assert "| 0.6 | 0.45 ± 0.01 | -0.15 | 0.41 … 0.49 | no |" in table[7]
    assert "| 0.53 | 0.5 | -0.03 | – | one seed: no band |" in table[8]
    assert "| 0.14 | – | – | – | not run |" in table[9]
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert rows[1]["verdict"] == "no" and float(rows[1]["difference"]) == pytest.approx(-0.15)
    assert rows[3]["reproduced"] == "" and rows[3]["source"] == "open-unlearning"


def test_on_the_miniature_the_reproduction_table_is_the_expected_comparison(
    tmp_path: Path,
) -> None:
    from bilevel_unlearning.report import reproduction

    comparison = {
        "tables": {
            "table_1_muse.csv": [
                {"row": "npo", "column": "knowmem_forget", "produced": 20.5, "expected": 20.0,
                 "delta": 0.5, "band": [18.0, 22.0], "status": "band", "ok": True},
            ],
            "table_9.csv": None,
        }
    }  # fmt: skip
    (line,) = reproduction.expected_lines(comparison, "default")
    assert (line.group, line.reference, line.reproduced, line.verdict) == (
        "table_1_muse",
        20.0,
        20.5,
        "band",
    )
    assert (line.band_low, line.band_high, line.difference) == (18.0, 22.0, 0.5)
    assert line.source == "config/expected/default/table_1_muse.csv (seed 0)"
