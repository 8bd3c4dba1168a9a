"""Provenance manifest of the paper outputs, its verification, and comparisons with references.

The manifest lists every final table and figure with its SHA-256, and every result file they
came from with its SHA-256 and the provenance it recorded (commit, config hash, model hash).
`verify` recomputes every checksum and fails on any mismatch.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.io import read_json, sha256_file, write_json, write_text
from bilevel_unlearning.numerics import pinned_here
from bilevel_unlearning.report.bands import (
    STATUSES,
    band_path,
    cell_status,
    read_bands,
)


def result_summary(path: Path) -> dict[str, Any]:
    """What a reviewer needs to tie a result to code, config and model."""
    summary: dict[str, Any] = {"sha256": sha256_file(path)}
    if path.suffix == ".json":
        provenance = read_json(path).get("provenance", {})
        summary.update(
            commit=provenance.get("git", {}).get("commit"),
            dirty=provenance.get("git", {}).get("dirty"),
            config_sha256=provenance.get("config_sha256"),
            model=provenance.get("model"),
            model_sha256=provenance.get("model_sha256"),
            device=provenance.get("device"),
            precision=provenance.get("precision"),
        )
    return summary


def model_files(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Every weight file behind the results, with the SHA-256 its evaluation recorded."""
    models = {}
    for summary in results.values():
        folder = summary.get("model")
        for name, digest in (summary.get("model_sha256") or {}).items():
            if folder:
                models[str(Path(folder) / name)] = {"sha256": digest}
    return dict(sorted(models.items()))


def build_manifest(outputs: Sequence[Path], results: Sequence[Path], out: Path) -> None:
    summaries = {str(p): result_summary(p) for p in results}
    manifest = {
        "outputs": {str(p): {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in outputs},
        "results": summaries,
        "models": model_files(summaries),
    }
    write_json(out, manifest)


def verify_manifest(manifest_path: Path) -> list[str]:
    """Every file (table, figure, result JSON, model weights) whose checksum no longer
    matches the manifest, or that is gone. Reads only: it runs and writes nothing."""
    manifest = read_json(
        manifest_path, made_by="rule manifest (snakemake paper_figures/MANIFEST.json)"
    )
    problems = []
    for section in ("outputs", "results", "models"):
        for name, entry in manifest.get(section, {}).items():
            path = Path(name)
            if not path.is_file():
                problems.append(f"{name}: missing")
            elif sha256_file(path) != entry["sha256"]:
                problems.append(f"{name}: checksum differs from the manifest")
    return problems


# ------------------------------------------------------------ expected and reference numbers


def tolerance(column: str, row: str = "") -> tuple[float, bool]:
    """(absolute tolerance, compare in log10) for a cell of a table CSV: its column's metric's,
    or its row's where a row names one (T4's `benchmark:row:metric`, the same tolerance for
    the attacked value and its change); the metric catalog states them."""
    if ":" in row:
        return catalog.tolerance(row.rsplit(":", 1)[-1])
    # group:metric, or with several seeds group:metric:std and group:metric:seed=<s>
    parts = column.split(":")
    return catalog.tolerance(next((p for p in parts if p in catalog.METRICS), parts[-1]))


def read_table_csv(path: Path) -> dict[tuple[str, str], float | None]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        (row["row"], column): (float(value) if value else None)
        for row in rows
        for column, value in row.items()
        if column != "row"
    }


def compare_tables(
    produced: Path,
    expected: Path,
    bands: Mapping[tuple[str, str], Any] | None = None,
    pinned: bool = False,
) -> list[dict[str, Any]]:
    """Every cell of two table CSVs side by side: its delta, its seed band (report.bands) and
    its status (equal, band, tolerance, outside). On a pinned machine (numerics.pinned_here)
    only "equal" is ok: the pins give the same bits on every x86-64 CPU with AVX2 (proven on
    emulated CPUs), so a moved cell is a change; elsewhere ok unless outside the band."""
    ours, theirs = read_table_csv(produced), read_table_csv(expected)
    bands = bands or {}
    cells = []
    for key in sorted(set(ours) | set(theirs)):
        a, b = ours.get(key), theirs.get(key)
        atol, in_log = tolerance(key[1], key[0])
        band = bands.get(key)
        status = cell_status(a, b, band, atol, in_log)
        if a is None or b is None:
            delta = None
        elif in_log:
            delta = math.log10(max(a, 1e-300)) - math.log10(max(b, 1e-300))
        else:
            delta = a - b
        cells.append({"row": key[0], "column": key[1], "produced": a, "expected": b,
                      "delta": delta, "band": None if band is None else [band.low, band.high],
                      "status": status,
                      "ok": status == "equal" if pinned else status != "outside"})  # fmt: skip
    return cells


def status_counts(cells: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    return {status: sum(c["status"] == status for c in cells) for status in STATUSES}


def shown_band(band: Sequence[float] | None) -> str:
    return "–" if band is None else f"{band[0]:.4g} … {band[1]:.4g}"


def comparison_markdown(title: str, cells: Sequence[Mapping[str, Any]]) -> str:
    bad = [c for c in cells if not c["ok"]]
    counts = status_counts(cells)
    lines = [
        f"## {title}",
        "",
        f"{len(cells) - len(bad)} of {len(cells)} cells agree: {counts['equal']} bit for bit, "
        f"{counts['band']} within the seed band, {counts['tolerance']} within tolerance (no "
        f"band committed); {counts['outside']} outside.",
    ]
    if bad:
        lines += [
            "",
            "| row | column | produced | expected | delta | seed band |",
            "|---|---|---:|---:|---:|---|",
        ]
        lines += [
            f"| {c['row']} | {c['column']} | {c['produced']} | {c['expected']} | {c['delta']} "
            f"| {shown_band(c['band'])} |"
            for c in bad
        ]
    return "\n".join(lines) + "\n"


def compare_expected(produced: Sequence[Path], expected_dir: Path, out: Path) -> bool:
    """Compare each produced table CSV with the committed one of the same name, cell by cell,
    against the committed seed bands beside it (report.bands).

    Writes out (Markdown) and out with .json (every cell); returns whether no cell is outside.
    """
    sections = [
        "# Produced tables against the committed expected tables",
        "",
        "equal: bit for bit the reference machine's value (what pinned CPU kernels give on any "
        "x86-64 machine with AVX2); band: within the seed band (config/expected/*/*.band.csv, "
        "`make expected-bands`); outside: neither, a regression to explain.",
        "",
    ]
    report: dict[str, Any] = {}
    pinned = pinned_here()
    for path in produced:
        reference = expected_dir / path.name
        if not reference.is_file():
            sections.append(f"## {path.name}\n\nNo expected table committed at {reference}.\n")
            report[path.name] = None
            continue
        bands = read_bands(band_path(reference))
        report[path.name] = cells = compare_tables(path, reference, bands, pinned)
        sections.append(comparison_markdown(path.name, cells))
    all_ok = all(cells is not None and all(c["ok"] for c in cells) for cells in report.values())
    counts = status_counts([c for cells in report.values() for c in cells or []])
    sections[4:4] = [bitwise_verdict(counts, pinned), ""]
    write_json(
        out.with_suffix(".json"),
        {"all_within_tolerance": all_ok, "status_counts": counts, "pinned": pinned,
         "moved": sum(counts.values()) - counts["equal"], "tables": report},
    )  # fmt: skip
    write_text(out, "\n".join(sections))
    return all_ok


def bitwise_verdict(counts: Mapping[str, int], pinned: bool) -> str:
    """What the cells that are not bit-equal mean on this machine. The seed bands are wide on
    the miniature (one seed's world against another's), so a change to a loss can stay inside
    them; on a pinned machine bit-equality is the sharp test, and this line says when it fails."""
    moved = sum(counts.values()) - counts["equal"]
    if not pinned:
        return (
            f"This machine does not run the pinned kernels (numerics.pins_apply, or "
            f"BILEVEL_NATIVE_KERNELS=1): {moved} cells differ in their bits, as expected; only "
            "the seed bands judge them."
        )
    if moved == 0:
        return "Pinned kernels (x86-64, AVX2): every cell is bit for bit the reference's."
    return (
        f"**{moved} cells moved although this machine runs the pinned kernels** (x86-64, AVX2), "
        "a failure: the pins give the reference machine's bits on every such CPU (proven on "
        "emulated Intel and AMD models, docs/fidelity.md), so a code, data or config change "
        "moved them. Re-commit the tables (`make expected-bands`) if the change is intended."
    )
