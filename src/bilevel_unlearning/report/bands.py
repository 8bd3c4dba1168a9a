"""Seed bands of the expected tables: how far a cell may move when only chance changes.

With the CPU kernels pinned (bilevel_unlearning.numerics) a run on any x86-64 machine with AVX2
gives the committed tables bit for bit. Elsewhere (ARM, a GPU, a machine where the pins cannot
apply) the last bits differ, and training amplifies them as much as a change of seed would. So
each committed table has a band per cell, made once from N runs of the whole workflow with
seeds 0..N-1 (`make expected-bands`): a fresh cell is
- "equal": bit for bit the reference machine's default-seed value;
- "band": inside the seed band;
- "tolerance": no band committed for it, within the metric catalog's tolerance of the value;
- "outside": none of these, the only failure.

A band is the seeds' mean +- BAND_SDS standard deviations, never narrower than the seeds' own
range, widened by the metric's tolerance (so one seed, or seeds that all agree, give the
value +- tolerance). With N = 5, 4 standard deviations cover a new draw from the same spread
with about 97% probability (Student's t with 4 degrees of freedom, prediction interval).
Cells compared in log10 (TOFU's forget-quality p-values) get their band in log10.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bilevel_unlearning.io import write_text

BAND_SDS = 4.0
LOG_FLOOR = 1e-300
Cell = tuple[str, str]  # (row, column) of a table CSV
STATUSES = ("equal", "band", "tolerance", "outside")


@dataclass(frozen=True)
class Band:
    """One cell's band over seeds, in shown units (low and high are values, not logs)."""

    seeds: int
    mean: float
    std: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _to_space(value: float, in_log: bool) -> float:
    return math.log10(max(value, LOG_FLOOR)) if in_log else value


def _from_space(value: float, in_log: bool) -> float:
    return 10.0**value if in_log else value


def band_of(values: Sequence[float], atol: float, in_log: bool = False) -> Band:
    """The band of one cell from its values over seeds (see the module docstring)."""
    if not values:
        raise ValueError("a band needs at least one seed's value")
    points = [_to_space(v, in_log) for v in values]
    mean = statistics.fmean(points)
    std = statistics.stdev(points) if len(points) > 1 else 0.0
    low = min(mean - BAND_SDS * std, min(points)) - atol
    high = max(mean + BAND_SDS * std, max(points)) + atol
    return Band(
        seeds=len(values),
        mean=_from_space(mean, in_log),
        std=std,
        low=_from_space(low, in_log),
        high=_from_space(high, in_log),
    )


def table_bands(
    tables: Sequence[Mapping[Cell, float | None]], tolerance
) -> dict[Cell, Band | None]:
    """Every cell's band over the seeds' tables that have a value there (a metric can be
    undefined for a seed: PrivLeak where the oracle's AUC is 0); None where no seed has one.
    `tolerance(column, row)` gives (atol, in_log) as the metric catalog states it."""
    cells = sorted({key for table in tables for key in table})
    bands: dict[Cell, Band | None] = {}
    for key in cells:
        values = [float(v) for table in tables if (v := table.get(key)) is not None]
        atol, in_log = tolerance(key[1], key[0])
        bands[key] = band_of(values, atol, in_log) if values else None
    return bands


BAND_FIELDS = ("row", "column", "seeds", "mean", "std", "low", "high")


def band_path(expected_table: Path) -> Path:
    """Where a committed table's bands live: beside it, as <table>.band.csv."""
    return expected_table.with_name(f"{expected_table.stem}.band.csv")


def write_bands(path: Path, bands: Mapping[Cell, Band | None]) -> None:
    lines = [",".join(BAND_FIELDS)]
    for (row, column), band in sorted(bands.items()):
        if band is None:
            lines.append(f"{row},{column},,,,,")
        else:
            values = (band.seeds, band.mean, band.std, band.low, band.high)
            lines.append(",".join([row, column, *(repr(v) for v in values)]))
    write_text(path, "\n".join(lines) + "\n")


def read_bands(path: Path) -> dict[Cell, Band | None]:
    """A committed band file; {} when none is committed (the comparison falls back to the
    metric catalog's tolerance)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        (r["row"], r["column"]): (
            Band(int(r["seeds"]), *(float(r[k]) for k in ("mean", "std", "low", "high")))
            if r["seeds"]
            else None
        )
        for r in rows
    }


def cell_status(
    produced: float | None,
    expected: float | None,
    band: Band | None,
    atol: float,
    in_log: bool,
) -> str:
    """equal, band, tolerance or outside (see the module docstring)."""
    if produced == expected:  # both None included
        return "equal"
    if produced is None or expected is None:
        return "outside"
    if band is not None:
        return "band" if band.contains(produced) else "outside"
    delta = _to_space(produced, in_log) - _to_space(expected, in_log)
    return "tolerance" if abs(delta) <= atol else "outside"
