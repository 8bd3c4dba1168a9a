"""Numbers quoted in docs/ are the committed expected tables' (a stale copy fails here)."""

from __future__ import annotations

import csv
import re

from conftest import REPO

ROWS = {"Target": "target", "Retrain (oracle)": "retrain", "GA": "ga", "NPO": "npo"}
ROWS["BLUR (NPO+GDR)"] = "blur_npo"


def test_robustness_doc_quotes_the_tiny_expected_table() -> None:
    with (REPO / "config/expected/tiny/table_4_robustness.csv").open() as handle:
        table = {row["row"]: row for row in csv.DictReader(handle)}
    text = (REPO / "docs/robustness.md").read_text()
    quoted = re.findall(r"^\| ([^|]+?) \| ([-+\d. |]+)\|$", text, flags=re.MULTILINE)
    assert {label for label, _ in quoted} == set(ROWS)
    for label, cells in quoted:
        row = table[f"muse_news:{ROWS[label]}:knowmem_forget"]
        columns = ("none", "relearn_s8", "recovered:relearn_s8")
        columns += ("quantize_int4", "recovered:quantize_int4")
        expected = [f"{float(row[c]):{'+' if 'recovered' in c else ''}.1f}" for c in columns]
        expected = ["0.0" if e in ("+0.0", "-0.0") else e for e in expected]
        assert [c.strip() for c in cells.split("|")] == expected, label
