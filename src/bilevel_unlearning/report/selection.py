"""Checkpoint selection by a stated rule: which evaluated epoch a table row reports.

The paper reports every method at a fixed epoch (`table_epoch`, and `method_table_epochs`).
A user who evaluates every epoch can instead let a rule pick (config `evaluate.<b>.select`):

    select: {metric: knowmem_forget, direction: min,
             constraint: {metric: knowmem_retain, within: 0.05, of: start}}

reads "the epoch with the lowest KnowMem D_f among those whose KnowMem D_r stays within 5%
(relative) of the start model's". Without a constraint every evaluated epoch competes; where
no epoch meets the constraint the row falls back to its fixed table epoch, and the note says
so. Ties go to the earlier epoch (less training). The rule reads the same evaluations as the
tables, so a chosen epoch traces back to result files like every other number; note that it
selects on the reported numbers themselves (there is no separate validation split), as the
toolkits' best-checkpoint options do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.runs import ORACLE_ROLE, START_ROLE, row_split

Results = Mapping[tuple[str, str, int], Mapping[str, Any]]
Rows = Mapping[str, Sequence[tuple[str, int]]]


@dataclass(frozen=True)
class Choice:
    row: str
    epoch: int
    met: bool  # False: no epoch met the constraint, the fixed table epoch is used


def reference_row(benchmark: str, row: str, of: str) -> str:
    """The reference a constraint compares with: the start model (`start`) or the oracle
    (`oracle`), on a TOFU row's own forget split."""
    family = bench(benchmark).family
    role = START_ROLE[family] if of == "start" else ORACLE_ROLE[family]
    split = row_split(benchmark, row)
    return role if split is None else f"{role}-{split}"


def meets(value: float, reference: float, within: float) -> bool:
    """Within a relative share of the reference (both as the tables show them)."""
    return abs(value - reference) <= within * abs(reference)


def _value(results: Results, benchmark: str, row: str, epoch: int, name: str) -> float:
    record = results.get((benchmark, row, epoch))
    value = None if record is None else record["metrics"].get(name)
    if value is None:
        raise KeyError(f"{benchmark}: no {name} for {row} at epoch {epoch} (checkpoint selection)")
    return catalog.shown(name, float(value))


def choose_epoch(
    results: Results,
    benchmark: str,
    row: str,
    epochs: Sequence[int],
    select: Mapping[str, Any],
    fallback: int,
) -> Choice:
    """The row's epoch by the rule (module docstring), among its evaluated epochs."""
    constraint = select.get("constraint")
    allowed = list(epochs)
    if constraint:
        of = reference_row(benchmark, row, constraint["of"])
        target = _value(results, benchmark, of, 0, constraint["metric"])
        allowed = [
            e
            for e in epochs
            if meets(
                _value(results, benchmark, row, e, constraint["metric"]),
                target,
                constraint["within"],
            )
        ]
    if not allowed:
        return Choice(row, fallback, met=False)
    sign = 1.0 if select["direction"] == "min" else -1.0
    best = min(
        sorted(allowed), key=lambda e: sign * _value(results, benchmark, row, e, select["metric"])
    )
    return Choice(row, best, met=True)


def select_rows(
    results: Results,
    rows: Rows,
    selects: Mapping[str, Mapping[str, Any]],
    fallbacks: Mapping[str, Mapping[str, int]],
) -> tuple[dict[str, list[tuple[str, int]]], dict[str, list[Choice]]]:
    """Each benchmark's rows with one epoch each: where the benchmark has a rule, every
    unlearned row (listed once per evaluated epoch) at its chosen epoch; reference rows
    (epoch 0) and benchmarks without a rule as they are. fallbacks: benchmark -> row -> its
    fixed table epoch. Returns the rows and the choices made."""
    chosen: dict[str, list[tuple[str, int]]] = {}
    choices: dict[str, list[Choice]] = {}
    for benchmark, listed in rows.items():
        select = selects.get(benchmark)
        epochs: dict[str, list[int]] = {}
        for row, epoch in listed:
            epochs.setdefault(row, []).append(int(epoch))
        chosen[benchmark] = []
        for row, found in epochs.items():
            if select is None or found == [0]:
                chosen[benchmark] += [(row, e) for e in found]
                continue
            choice = choose_epoch(results, benchmark, row, found, select, fallbacks[benchmark][row])
            choices.setdefault(benchmark, []).append(choice)
            chosen[benchmark].append((row, choice.epoch))
    return chosen, choices


def rule_text(select: Mapping[str, Any]) -> str:
    """The rule in words: 'lowest KnowMem D_f with KnowMem D_r within 5% of the start model'."""
    metric = catalog.METRICS[select["metric"]].label
    text = f"{'lowest' if select['direction'] == 'min' else 'highest'} {metric}"
    constraint = select.get("constraint")
    if constraint:
        bound = catalog.METRICS[constraint["metric"]].label
        who = "the start model" if constraint["of"] == "start" else "the oracle"
        text += f" with {bound} within {100 * constraint['within']:g}% of {who}"
    return text


def selection_notes(
    choices: Mapping[str, Sequence[Choice]], selects: Mapping[str, Mapping[str, Any]]
) -> tuple[str, ...]:
    """One note per benchmark with a rule: the rule, and each row's chosen epoch (or that no
    epoch met the constraint)."""
    notes = []
    for benchmark, made in choices.items():
        parts = [
            f"{c.row} epoch {c.epoch}"
            + ("" if c.met else " (none met the constraint: table epoch)")
            for c in made
        ]
        notes.append(
            f"{benchmark}: epochs chosen by rule ({rule_text(selects[benchmark])}): "
            + ", ".join(parts)
            + "."
        )
    return tuple(notes)
