"""The reproduction table: this run's numbers beside the ones they should match, in one place
(paper_figures/table_reproduction.{md,csv}).

On the paper path the comparison is with published numbers (config/reference_results.yaml,
each with its source): per benchmark, row and metric, the published value, this run's mean
(± standard deviation and seed band with several seeds, config `seeds`), the difference, and
whether the published number lies in the band. On the miniature, where nothing is published,
it is the comparison with the committed expected tables (config/expected/<name>/, seed 0, and
their seed bands), cell by cell, read from the expected-table comparison's JSON.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.io import write_text
from bilevel_unlearning.report.bands import BAND_SDS, band_of
from bilevel_unlearning.runs import seedless_row


@dataclass(frozen=True)
class Line:
    """One compared number: what it is, what it should be, what this run gave."""

    group: str  # a benchmark (published numbers) or a table (expected tables)
    row: str
    metric: str
    reference: float | None  # the published or expected value
    reproduced: float | None  # this run's value (the mean over its seeds)
    spread: float | None  # the standard deviation over seeds (None with one)
    band_low: float | None
    band_high: float | None
    difference: float | None  # reproduced - reference
    verdict: str  # in band yes/no, one seed; or equal, band, tolerance, outside
    source: str


def reproduced_values(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    benchmark: str,
    row: str,
    epoch: int,
    metric: str,
) -> list[float]:
    """A row's metric over its seeds (runs.seedless_row gathers row-seed<N>), as a fraction."""
    return [
        float(record["metrics"][metric])
        for (b, name, e), record in sorted(results.items())
        if b == benchmark and e == epoch and seedless_row(name) == row
        and record["metrics"].get(metric) is not None
    ]  # fmt: skip


def published_line(entry: Mapping[str, Any], values: Sequence[float], source: str) -> Line:
    """A published number against a run's values over seeds: in the seed band (report.bands,
    without the tolerance widening: the band of chance alone) or not; one seed has no band."""
    published = float(entry["value"])
    key = (entry["benchmark"], entry["row"], entry["metric"])
    if not values:
        return Line(*key, published, None, None, None, None, None, "not run", source)
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else None
    if spread is None:
        return Line(
            *key, published, mean, None, None, None, mean - published, "one seed: no band", source
        )
    band = band_of(values, atol=0.0, in_log=catalog.tolerance(entry["metric"])[1])
    verdict = "yes" if band.contains(published) else "no"
    return Line(
        *key, published, mean, spread, band.low, band.high, mean - published, verdict, source
    )


def published_lines(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    references: Mapping[str, Any],
    epochs: Mapping[str, int],
) -> list[Line]:
    """Every entry of config/reference_results.yaml against this run (epochs: each benchmark's
    table epoch; reference models at 0)."""
    lines = []
    for entry in references["entries"]:
        benchmark = entry["benchmark"]
        epoch = 0 if entry.get("reference_model", False) else epochs.get(benchmark, 0)
        values = reproduced_values(results, benchmark, entry["row"], epoch, entry["metric"])
        lines.append(published_line(entry, values, references["sources"][entry["source"]]))
    return lines


def expected_lines(comparison: Mapping[str, Any], expected: str) -> list[Line]:
    """The cells of the expected-table comparison (report.manifest.compare_expected's JSON)."""
    lines = []
    for table, cells in comparison["tables"].items():
        source = f"config/expected/{expected}/{table} (seed 0)"
        for c in cells or []:
            low, high = c["band"] or (None, None)
            lines.append(
                Line(table.removesuffix(".csv"), c["row"], c["column"], c["expected"],
                     c["produced"], None, low, high, c["delta"], c["status"], source)
            )  # fmt: skip
    return lines


def shown(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def to_csv(lines: Sequence[Line]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f.name for f in fields(Line)])
    writer.writerows(["" if v is None else v for v in astuple(line)] for line in lines)
    return buffer.getvalue()


PUBLISHED_INTRO = (
    "This run against published numbers (config/reference_results.yaml). Reproduced: the mean "
    f"over the run's seeds (± their standard deviation with several); in band: the published "
    f"number inside mean ± {BAND_SDS:g} standard deviations. Values are fractions, as the "
    "evaluation JSONs store them."
)
EXPECTED_INTRO = (
    "The miniature has no published numbers: this run against the committed expected tables "
    "(seed 0 on the reference machine) and their seed bands. Status: equal (bit for bit), "
    "band (within the seed band), tolerance (within the metric's tolerance, no band), outside "
    "(a regression to explain). Values as the tables show them."
)


def to_markdown(lines: Sequence[Line], intro: str) -> str:
    text = ["# Reproduction: this run against its reference numbers", "", intro, ""]
    text += [
        "| benchmark / table | row | metric | reference | reproduced | difference | band "
        "| verdict | source |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for line in lines:
        spread = "" if line.spread is None else f" ± {line.spread:.2g}"
        band = "–" if line.band_low is None else f"{shown(line.band_low)} … {shown(line.band_high)}"
        difference = "–" if line.difference is None else f"{line.difference:+.4g}"
        text.append(
            f"| {line.group} | {line.row} | {line.metric} | {shown(line.reference)} | "
            f"{shown(line.reproduced)}{spread} | {difference} | {band} | {line.verdict} | "
            f"{line.source} |"
        )
    return "\n".join(text) + "\n"


def write_reproduction(lines: Sequence[Line], intro: str, out_stem: Path) -> None:
    """table_reproduction.md and .csv (each written atomically)."""
    write_text(out_stem.with_suffix(".md"), to_markdown(lines, intro))
    write_text(out_stem.with_suffix(".csv"), to_csv(lines))
