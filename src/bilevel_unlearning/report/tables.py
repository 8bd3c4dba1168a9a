"""Tables T1 (MUSE), T2 (WMDP), T3 (TOFU) and S1 (MUSE's MIA suite; T4: report.robustness) from
evaluation JSONs, as CSV, Markdown and LaTeX.

A table is built as data first (rows of numbers, columns with a direction), then rendered;
the best method per column is marked in Markdown and LaTeX (reference rows never compete).
Values are read from the result JSONs only, and held as the tables show them (the metric
catalog's scale applied: MUSE and WMDP x100), so every rendering, the CSV included, and the
comparison with the expected tables see one number.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.benchmarks import BENCHMARKS
from bilevel_unlearning.io import read_json, write_text
from bilevel_unlearning.report.style import ARROWS, display
from bilevel_unlearning.runs import (
    NO_ATTACK,
    ORACLE_ROLE,
    SEED_SUFFIX,
    START_ROLE,
    seedless_row,
)


@dataclass(frozen=True)
class Column:
    """One column: which metric of which group's results, shown how, better which way."""

    group: str  # the results a column reads (a benchmark, a TOFU split)
    metric: str
    header: str
    direction: str  # down | up | zero
    digits: int = 1


def column(group: str, name: str) -> Column:
    """A column showing a catalog metric of one group's results."""
    metric = catalog.METRICS[name]
    return Column(group, name, metric.label, metric.direction, metric.digits)


def references(family: str) -> list[str]:
    """A benchmark family's reference rows: the start model, then the oracle (if any)."""
    return [role for role in (START_ROLE[family], ORACLE_ROLE[family]) if role]


@dataclass(frozen=True)
class Table:
    name: str
    caption: str
    columns: tuple[Column, ...]
    rows: tuple[str, ...]  # row keys (run names without the split suffix)
    reference_rows: frozenset[str]
    values: Mapping[tuple[str, Column], float | None]
    notes: tuple[str, ...] = ()
    # row key -> its label (default: the method's display name)
    labels: Mapping[str, str] = field(default_factory=dict)
    # row key -> digits, where a row's metric sets them instead of the column's
    row_digits: Mapping[str, int] = field(default_factory=dict)
    mark_best: bool = True  # bold the best method per column (not where columns mix metrics)
    # with several seeds (config `seeds`): each seed's value of a (row, column), by seed label
    # (own, 1, 2, ...); `values` then holds their mean
    seed_values: Mapping[tuple[str, Column], Mapping[str, float | None]] = field(
        default_factory=dict
    )

    def label(self, row: str) -> str:
        return self.labels.get(row) or display(row)

    def spread(self, row: str, column: Column) -> float | None:
        """The standard deviation over seeds; None with one seed or fewer than two values."""
        present = [v for v in self.seed_values.get((row, column), {}).values() if v is not None]
        return statistics.stdev(present) if len(present) > 1 else None

    def formatted(self, row: str, column: Column) -> str:
        digits = self.row_digits.get(row, column.digits)
        text = formatted(self.values.get((row, column)), digits)
        spread = self.spread(row, column)
        return text if spread is None else f"{text} ± {formatted(spread, digits)}"

    def all_notes(self) -> tuple[str, ...]:
        """The table's notes, and how several seeds are shown."""
        seeds = self.seed_labels()
        if not seeds:
            return self.notes
        shown = ", ".join("the benchmark's own" if s == "own" else str(s) for s in seeds)
        return (
            *self.notes,
            f"Unlearned rows: mean ± standard deviation over {len(seeds)} seeds ({shown}); "
            "each seed's value is in the CSV.",
        )

    def seed_labels(self) -> list[str]:
        """Every seed label of the table, the benchmark's own seed first."""
        found = {label for per_seed in self.seed_values.values() for label in per_seed}
        return sorted(
            found, key=lambda label: (label != "own", int(label) if label.isdigit() else 0)
        )


CORPUS = {b.name: b.label for b in BENCHMARKS.values() if b.family == "muse"}
BENCHMARK_LABELS = {b.name: b.label for b in BENCHMARKS.values()}


def best_of(values: Sequence[float], direction: str) -> float:
    key = {"down": lambda v: v, "up": lambda v: -v, "zero": abs}[direction]
    return min(values, key=key)


def best_rows(table: Table, column: Column) -> set[str]:
    """Rows holding the column's best value among the methods (ties all marked)."""
    if not table.mark_best:
        return set()
    scored = {
        row: table.values.get((row, column))
        for row in table.rows
        if row not in table.reference_rows
    }
    present = [v for v in scored.values() if v is not None and not math.isnan(v)]
    if not present:
        return set()
    best = best_of(present, column.direction)
    return {row for row, v in scored.items() if v is not None and v == best}


def formatted(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if digits >= 3 and value != 0 and abs(value) < 10**-digits:
        return f"{value:.2e}"  # forget_quality spans many orders of magnitude
    return f"{value:.{digits}f}"


def header(column: Column, with_group: bool) -> str:
    text = f"{column.group} {column.header}" if with_group else column.header
    return f"{text} {ARROWS[column.direction]}".rstrip()


def _groups(table: Table) -> bool:
    return len({c.group for c in table.columns}) > 1


def to_csv(table: Table) -> str:
    """Full-precision values as the table shows them, one column per metric; with several
    seeds the mean there, then per metric its standard deviation (<column>:std) and each
    seed's value (<column>:seed=own, <column>:seed=1, ...)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [f"{c.group}:{c.metric}".lstrip(":") for c in table.columns]
    seeds = table.seed_labels()
    extra = [f"{n}:std" for n in names] + [f"{n}:seed={s}" for n in names for s in seeds]
    writer.writerow(["row", *names, *(extra if seeds else [])])
    for row in table.rows:
        cells = [table.values.get((row, c)) for c in table.columns]
        if seeds:
            cells += [table.spread(row, c) for c in table.columns]
            cells += [
                table.seed_values.get((row, c), {}).get(s) for c in table.columns for s in seeds
            ]
        writer.writerow([row, *("" if v is None else repr(v) for v in cells)])
    return buffer.getvalue()


def to_markdown(table: Table) -> str:
    with_group = _groups(table)
    best = {c: best_rows(table, c) for c in table.columns}
    lines = [
        f"**{table.caption}**",
        "",
        "| Method | " + " | ".join(header(c, with_group) for c in table.columns) + " |",
        "|---|" + "---:|" * len(table.columns),
    ]
    for row in table.rows:
        cells = []
        for c in table.columns:
            text = table.formatted(row, c)
            cells.append(f"**{text}**" if row in best[c] else text)
        label = f"*{table.label(row)}*" if row in table.reference_rows else table.label(row)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {n}" for n in table.all_notes())]
    return "\n".join(lines).rstrip() + "\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("γ", r"$\gamma$")):
        text = text.replace(char, escaped)
    return text


def to_latex(table: Table) -> str:
    arrows = {"down": r"$\downarrow$", "up": r"$\uparrow$", "zero": r"$\rightarrow 0$", "none": ""}
    best = {c: best_rows(table, c) for c in table.columns}
    with_group = _groups(table)
    heads = [
        _latex_escape(f"{c.group} {c.header}" if with_group else c.header)
        + (f" {arrows[c.direction]}" if arrows[c.direction] else "")
        for c in table.columns
    ]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(table.caption)}}}",
        rf"\label{{tab:{table.name}}}",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        "Method & " + " & ".join(heads) + r" \\",
        r"\midrule",
    ]
    for index, row in enumerate(table.rows):
        cells = []
        for c in table.columns:
            text = table.formatted(row, c)
            cells.append(rf"\textbf{{{text}}}" if row in best[c] else text)
        lines.append(_latex_escape(table.label(row)) + " & " + " & ".join(cells) + r" \\")
        is_last_reference = row in table.reference_rows and (
            index + 1 < len(table.rows) and table.rows[index + 1] not in table.reference_rows
        )
        if is_last_reference:
            lines.append(r"\midrule")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    lines += [f"% {n}" for n in table.all_notes()]
    return "\n".join(lines) + "\n"


def write_table(table: Table, out_stem: Path) -> None:
    """paper_figures/<name>.csv, .md and .tex, each written atomically."""
    write_text(out_stem.with_suffix(".csv"), to_csv(table))
    write_text(out_stem.with_suffix(".md"), to_markdown(table))
    write_text(out_stem.with_suffix(".tex"), to_latex(table))


# ------------------------------------------------------------------ from results to tables


def metric(record: Mapping[str, Any] | None, name: str) -> float | None:
    """A metric of a result as tables show it (metric_catalog.shown); None where missing."""
    if record is None:
        return None
    value = record["metrics"].get(name)
    return None if value is None else catalog.shown(name, float(value))


def load_all_results(
    paths: Sequence[str | Path],
) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    """(benchmark, row, epoch, attack) -> evaluation JSON, for every file given."""
    results = {}
    for path in paths:
        record = read_json(path, made_by="its evaluate_<benchmark> rule")
        catalog.check_result_format(record, path, "evaluate_<benchmark>")
        key = (record["benchmark"], record["run"], int(record["epoch"]))
        results[(*key, record.get("attack", NO_ATTACK))] = record
    return results


def load_results(paths: Sequence[str | Path]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(benchmark, row, epoch) -> evaluation JSON of the models as they are (no attack)."""
    return {
        key[:3]: record for key, record in load_all_results(paths).items() if key[3] == NO_ATTACK
    }


TableRows = Mapping[str, Sequence[tuple[str, int]]]  # benchmark -> (row, epoch) it reads


def split_row(row: str, suffix: str) -> str:
    """A table's row key: the evaluated row without its split suffix (TOFU's -forgetNN)."""
    return row.removesuffix(suffix) if suffix else row


def seed_label(row: str) -> str:
    """own for a run at its benchmark's own seed, else the seed of its -seed<N> suffix."""
    found = SEED_SUFFIX.search(row)
    return found.group(1) if found else "own"


def _rows_and_values(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    rows: TableRows,
    groups: Mapping[str, tuple[str, str]],
    references: Sequence[str],
    columns: Sequence[Column],
) -> tuple[tuple[str, ...], dict[tuple[str, Column], float | None], dict]:
    """Values of each (row, column): `rows` (runs.table_rows) names the evaluations a table
    reads, each at its epoch; groups name the (benchmark, row suffix) of a column. A row run
    with several seeds gathers them (runs.seedless_row): its value is their mean, and the
    third result holds each seed's value."""
    epoch_of = {(b, row): int(epoch) for b, listed in rows.items() for row, epoch in listed}
    keys = list(references)
    members: dict[tuple[str, str], list[str]] = {}
    for benchmark, suffix in groups.values():
        for row, _ in rows.get(benchmark, ()):
            base = seedless_row(row)
            members.setdefault((benchmark, base), []).append(row)
            if base.endswith(suffix) and split_row(base, suffix) not in keys:
                keys.append(split_row(base, suffix))
    values: dict[tuple[str, Column], float | None] = {}
    seed_values: dict[tuple[str, Column], dict[str, float | None]] = {}
    for key in keys:
        for c in columns:
            benchmark, suffix = groups[c.group]
            per_seed = {}
            for row in members.get((benchmark, key + suffix), [key + suffix]):
                epoch = epoch_of.get((benchmark, row))
                record = None if epoch is None else results.get((benchmark, row, epoch))
                per_seed[seed_label(row)] = metric(record, c.metric)
            present = [v for v in per_seed.values() if v is not None]
            values[(key, c)] = statistics.fmean(present) if present else None
            if len(per_seed) > 1:
                seed_values[(key, c)] = per_seed
    return tuple(keys), values, seed_values


def own_epochs(rows: TableRows, epochs: Mapping[str, int], suffixes: Sequence[str] = ("",)) -> str:
    """ "; m epoch e, ..." for the methods reported at an epoch other than their benchmark's
    table epoch (method_table_epochs); nothing if none."""
    own = {
        f"{split_row(seedless_row(row), suffix)} epoch {epoch}"
        for b, listed in rows.items()
        for row, epoch in listed
        for suffix in suffixes
        if epoch not in (0, epochs[b]) and row.endswith(suffix)
    }
    return f"; {', '.join(sorted(own))}" if own else ""


def muse_table(
    results: Mapping, rows: TableRows, epochs: Mapping[str, int], mia: bool = False
) -> Table:
    """T1: both corpora side by side (those in `rows`), Target and Retrain first; a method
    with its own table epoch (MUSE's Task Vector and SimNPO: the last) reports that one.
    mia: the supplementary table S1 instead, the PrivLeak of every membership score."""
    corpora = [b for b in CORPUS if b in rows]
    names = catalog.MUSE_MIA_TABLE if mia else catalog.MUSE_TABLE
    columns = tuple(column(CORPUS[b], name) for b in corpora for name in names)
    groups = {CORPUS[b]: (b, "") for b in corpora}
    refs = references("muse")
    keys, values, seeds = _rows_and_values(results, rows, groups, refs, columns)
    chosen = ", ".join(f"{CORPUS[b]} epoch {epochs[b]}" for b in corpora)
    chosen += own_epochs({b: rows[b] for b in corpora}, epochs)
    if mia:
        caption = (
            f"MUSE ({chosen}), supplementary: PrivLeak (%) of each membership score of MUSE's "
            "privleak code (forget vs holdout AUC against the retrain oracle's); Table 1 "
            "reports Min-40%."
        )
    else:
        caption = (
            f"MUSE ({chosen}): VerbMem and KnowMem are ROUGE-L F1 x100; PrivLeak is the "
            "Min-K% AUC gap to the retrain oracle in %."
        )
    name = "table_s1_muse_mia" if mia else "table_1_muse"
    return Table(name, caption, columns, keys, frozenset(refs), values, seed_values=seeds)


def wmdp_table(
    results: Mapping, rows: TableRows, epochs: Mapping[str, int], topics: Sequence[str]
) -> Table:
    """T2: accuracy x100 on each evaluated topic and on MMLU; a left-out topic is noted; a
    method with its own table epoch (method_table_epochs) reports that one."""
    columns = tuple(column("WMDP", name) for name in catalog.wmdp_table(topics))
    refs = references("wmdp")
    keys, values, seeds = _rows_and_values(results, rows, {"WMDP": ("wmdp", "")}, refs, columns)
    notes = tuple(
        f"{label} is not evaluated: the topic is left out (config wmdp.topics)."
        for topic, label in catalog.WMDP_TOPIC_LABELS.items()
        if topic not in topics
    )
    return Table(
        "table_2_wmdp",
        f"WMDP (epoch {epochs['wmdp']}{own_epochs(rows, epochs)}): zero-shot accuracy x100 "
        "(lm-eval).",
        columns,
        keys,
        frozenset(refs),
        values,
        notes,
        seed_values=seeds,
    )


def tofu_table(
    results: Mapping, rows: TableRows, epochs: Mapping[str, int], splits: Sequence[str]
) -> Table:
    """T3: every forget split side by side; Finetuned and Retain first; a method with its own
    table epoch (method_table_epochs) reports that one."""
    columns = tuple(column(split, name) for split in splits for name in catalog.TOFU_TABLE)
    groups = {split: ("tofu", f"-{split}") for split in splits}
    refs = references("tofu")
    keys, values, seeds = _rows_and_values(results, rows, groups, refs, columns)
    own = own_epochs(rows, epochs, [f"-{split}" for split in splits])
    return Table(
        "table_3_tofu",
        f"TOFU (epoch {epochs['tofu']}{own}): forget quality is the KS-test p-value against "
        "the retain oracle.",
        columns,
        keys,
        frozenset(refs),
        values,
        seed_values=seeds,
    )
