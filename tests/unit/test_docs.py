"""Numbers quoted in docs/ are the committed expected tables' (a stale copy fails here)."""

from __future__ import annotations

import csv

from conftest import REPO

ROWS = {"Target": "target", "Retrain (oracle)": "retrain", "GA": "ga", "NPO": "npo"}
ROWS["BLUR (NPO+GDR)"] = "blur_npo"


def markdown_table(text: str, header: str) -> list[tuple[str, list[str]]]:
    """The (label, cells) rows of the markdown table whose header line starts with `header`."""
    rows = []
    for line in text[text.index(header) :].splitlines()[2:]:
        if not line.startswith("|"):
            break
        label, *cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((label, cells))
    return rows


def formatted(row: dict[str, str], columns: tuple[str, ...]) -> list[str]:
    """The cells as the doc writes them: one decimal, a sign on recoveries, no -0.0."""
    cells = [f"{float(row[c]):{'+' if 'recovered' in c else ''}.1f}" for c in columns]
    return ["0.0" if c in ("+0.0", "-0.0") else c for c in cells]


def test_robustness_doc_quotes_the_tiny_expected_table() -> None:
    with (REPO / "config/expected/tiny/table_4_robustness.csv").open() as handle:
        table = {row["row"]: row for row in csv.DictReader(handle)}
    text = (REPO / "docs/robustness.md").read_text()
    quoted = {
        "| row | no attack |": (
            *("none", "relearn_s8", "recovered:relearn_s8"),
            *("quantize_int4", "recovered:quantize_int4"),
        ),
        "| row | Δ same set |": ("recovered:relearn_s8", "recovered:relearn_heldout_s8"),
    }
    for header, columns in quoted.items():
        rows = markdown_table(text, header)
        assert {label for label, _ in rows} == set(ROWS), header
        for label, cells in rows:
            row = table[f"muse_news:{ROWS[label]}:knowmem_forget"]
            assert cells == formatted(row, columns), (header, label)
