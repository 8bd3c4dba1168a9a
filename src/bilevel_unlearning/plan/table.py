"""The plan as text: one line per job (memory per GPU by component, runtime, disk), totals,
notes and the assumptions; jobs read from JSON for `cli plan`."""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.plan.evaluation import EVAL_ASSUMPTIONS, EvalCount, evaluation_lines
from bilevel_unlearning.plan.memory import ASSUMPTIONS, GIB, Estimate, estimate

# -- the table -----------------------------------------------------------------------------------


def _gib(value: float) -> str:
    return f"{value / GIB:.1f}"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "?"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


COLUMNS = (
    "job",
    "GPUs",
    "batch",
    "precision",
    "weights",
    "frozen",
    "grads",
    "extra",
    "optim",
    "activ",
    "total GiB",
    "runtime",
    "disk GB",
    "",
)


def table_rows(estimates: Sequence[Estimate]) -> list[list[str]]:
    rows = []
    for e in estimates:
        rows.append(
            [
                e.name,
                f"{e.gpus} {e.strategy}",
                e.batch,
                e.precision,
                *(
                    _gib(v)
                    for v in (e.weights, e.frozen, e.grads, e.extra, e.optimizer, e.activations)
                ),
                _gib(e.total),
                _duration(e.seconds),
                f"{e.disk / 1e9:.0f}",
                "" if e.fits else f"EXCEEDS {e.gpu_memory / GIB:.0f} GiB",
            ]
        )
    return rows


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """Numbers right-aligned, text left-aligned."""
    numeric = (*range(4, 11), 12)
    padded = [
        c.rjust(w) if i in numeric else c.ljust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(padded).rstrip()


def _bullets(texts: Sequence[str]) -> list[str]:
    return [textwrap.fill(t, 100, initial_indent="- ", subsequent_indent="  ") for t in texts]


def unlearning_hours(estimates: Sequence[Estimate]) -> float:
    """GPU-hours of the runs whose runtime is known."""
    return sum(e.seconds * e.gpus for e in estimates if not math.isnan(e.seconds)) / 3600


def totals_line(estimates: Sequence[Estimate], evaluated: bool = False) -> str:
    """GPU-hours of the unlearning runs whose runtime is known, and the disk of all of them."""
    unknown = sum(math.isnan(e.seconds) for e in estimates)
    disk = sum(e.disk for e in estimates) / 1e12
    return (
        f"Totals: {len(estimates)} unlearning runs, {unlearning_hours(estimates):,.0f} GPU-hours"
        + (f" (+ {unknown} of unknown runtime)" if unknown else "")
        + f", {disk:.2f} TB of checkpoints; "
        + ("evaluations below." if evaluated else "evaluation GPU-hours are not estimated.")
    )


def plan_table(
    rows: Sequence[Mapping[str, Any]],
    notes: Sequence[str] = (),
    evaluations: Sequence[EvalCount] = (),
) -> str:
    """One line per job (memory per GPU by component, runtime), the evaluations' GPU-hours
    when given, notes, then the assumptions."""
    estimates = [estimate(job) for job in rows]
    body = [list(COLUMNS), *table_rows(estimates)]
    widths = [max(len(r[i]) for r in body) for i in range(len(COLUMNS))]
    lines = [_line(row, widths) for row in body]
    lines.insert(1, "-" * len(lines[0]))
    lines += ["", totals_line(estimates, bool(evaluations))]
    assumed = list(ASSUMPTIONS)
    if evaluations:
        lines += ["", *evaluation_lines(list(evaluations), unlearning_hours(estimates))]
        assumed += EVAL_ASSUMPTIONS
    noted = ["", "Notes:", *_bullets(notes)] if notes else []
    assumptions = ["", "Assumptions:", *_bullets(assumed)]
    return "\n".join([*lines, *noted, *assumptions]) + "\n"


def load_jobs(text: str) -> list[dict[str, Any]]:
    """Jobs from a JSON string or a JSON file: a list of job dicts, or {"jobs": [...]}."""
    inline = text.lstrip().startswith(("[", "{"))
    data = json.loads(text if inline else Path(text).read_text(encoding="utf-8"))
    jobs = data["jobs"] if isinstance(data, Mapping) else data
    if not isinstance(jobs, list) or not all(isinstance(j, Mapping) for j in jobs):
        raise ValueError('jobs must be a JSON list of objects (or {"jobs": [...]})')
    return jobs
