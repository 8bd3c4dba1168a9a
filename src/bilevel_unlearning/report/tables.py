"""Tables T1 (MUSE), T2 (WMDP), T3 (TOFU), S1 (MUSE's MIA suite) and T4 (robustness) from
evaluation JSONs, as CSV, Markdown and LaTeX.

A table is built as data first (rows of numbers, columns with a direction), then rendered;
the best method per column is marked in Markdown and LaTeX (reference rows never compete).
Values are read from the result JSONs only.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.benchmarks import BENCHMARKS
from bilevel_unlearning.io import read_json, write_text
from bilevel_unlearning.report.style import ARROWS, display
from bilevel_unlearning.runs import NO_ATTACK, ORACLE_ROLE, START_ROLE


@dataclass(frozen=True)
class Column:
    """One column: which metric of which group's results, shown how, better which way."""

    group: str  # the results a column reads (a benchmark, a TOFU split)
    metric: str
    header: str
    direction: str  # down | up | zero
    scale: float = 1.0
    digits: int = 1


def column(group: str, name: str) -> Column:
    """A column showing a catalog metric of one group's results."""
    metric = catalog.METRICS[name]
    return Column(group, name, metric.label, metric.direction, metric.scale, metric.digits)


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
    # row key -> (scale, digits), where a row's metric sets them instead of the column's
    row_formats: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    mark_best: bool = True  # bold the best method per column (not where columns mix metrics)

    def label(self, row: str) -> str:
        return self.labels.get(row) or display(row)

    def formatted(self, row: str, column: Column) -> str:
        scale, digits = self.row_formats.get(row, (column.scale, column.digits))
        return formatted(self.values.get((row, column)), scale, digits)


CORPUS = {b.name: b.label for b in BENCHMARKS.values() if b.family == "muse"}


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


def formatted(value: float | None, scale: float, digits: int) -> str:
    if value is None:
        return "–"
    shown = value * scale
    if digits >= 3 and shown != 0 and abs(shown) < 10**-digits:
        return f"{shown:.2e}"  # forget_quality spans many orders of magnitude
    return f"{shown:.{digits}f}"


def header(column: Column, with_group: bool) -> str:
    text = f"{column.group} {column.header}" if with_group else column.header
    return f"{text} {ARROWS[column.direction]}".rstrip()


def _groups(table: Table) -> bool:
    return len({c.group for c in table.columns}) > 1


def to_csv(table: Table) -> str:
    """Full-precision values, one column per metric (unscaled, as in the JSONs)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", *(f"{c.group}:{c.metric}".lstrip(":") for c in table.columns)])
    for row in table.rows:
        cells = [table.values.get((row, c)) for c in table.columns]
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
    lines += ["", *(f"- {n}" for n in table.notes)]
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
    lines += [f"% {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def write_table(table: Table, out_stem: Path) -> None:
    """paper_figures/<name>.csv, .md and .tex, each written atomically."""
    write_text(out_stem.with_suffix(".csv"), to_csv(table))
    write_text(out_stem.with_suffix(".md"), to_markdown(table))
    write_text(out_stem.with_suffix(".tex"), to_latex(table))


# ------------------------------------------------------------------ from results to tables


def metric(record: Mapping[str, Any] | None, name: str) -> float | None:
    if record is None:
        return None
    value = record["metrics"].get(name)
    return None if value is None else float(value)


def load_all_results(
    paths: Sequence[str | Path],
) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    """(benchmark, row, epoch, attack) -> evaluation JSON, for every file given."""
    results = {}
    for path in paths:
        record = read_json(path, made_by="its evaluate_<benchmark> rule")
        key = (record["benchmark"], record["run"], int(record["epoch"]))
        results[(*key, record.get("attack", NO_ATTACK))] = record
    return results


def load_results(paths: Sequence[str | Path]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(benchmark, row, epoch) -> evaluation JSON of the models as they are (no attack)."""
    return {
        key[:3]: record for key, record in load_all_results(paths).items() if key[3] == NO_ATTACK
    }


def _rows_and_values(
    results: Mapping[tuple[str, str, int], Mapping[str, Any]],
    groups: Mapping[str, tuple[str, str, int]],
    references: Sequence[str],
    methods: Sequence[str],
    columns: Sequence[Column],
    method_epochs: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[tuple[str, ...], dict[tuple[str, Column], float | None]]:
    """Values of each (row, column): groups name (benchmark, row suffix, epoch) of a column;
    method_epochs (benchmark -> method -> epoch) overrides the epoch of single rows."""
    rows = (*references, *methods)
    values: dict[tuple[str, Column], float | None] = {}
    for row in rows:
        for c in columns:
            benchmark, suffix, epoch = groups[c.group]
            epoch = (method_epochs or {}).get(benchmark, {}).get(row, epoch)
            at = 0 if row in references else epoch
            values[(row, c)] = metric(results.get((benchmark, row + suffix, at)), c.metric)
    return rows, values


def muse_table(
    results: Mapping,
    methods: Sequence[str],
    epochs: Mapping[str, int],
    method_epochs: Mapping[str, Mapping[str, int]] | None = None,
    mia: bool = False,
) -> Table:
    """T1: both corpora side by side (those evaluated), Target and Retrain first; a method
    with its own evaluated epoch (MUSE's Task Vector and SimNPO: the last) reports that one.
    mia: the supplementary table S1 instead, the PrivLeak of every membership score."""
    corpora = [b for b in CORPUS if any(key[0] == b for key in results)]
    names = catalog.MUSE_MIA_TABLE if mia else catalog.MUSE_TABLE
    columns = tuple(column(CORPUS[b], name) for b in corpora for name in names)
    groups = {CORPUS[b]: (b, "", epochs[b]) for b in corpora}
    refs = references("muse")
    rows, values = _rows_and_values(results, groups, refs, methods, columns, method_epochs)
    chosen = ", ".join(f"{CORPUS[b]} epoch {epochs[b]}" for b in corpora)
    own = sorted(
        {f"{m} epoch {e}" for b in corpora for m, e in (method_epochs or {}).get(b, {}).items()}
    )
    chosen += f"; {', '.join(own)}" if own else ""
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
    return Table(name, caption, columns, rows, frozenset(refs), values)


def own_epochs(method_epochs: Mapping[str, int] | None) -> str:
    """ "; m epoch e, ..." for the methods reported at their own epoch (nothing if none)."""
    own = sorted(f"{m} epoch {e}" for m, e in (method_epochs or {}).items())
    return f"; {', '.join(own)}" if own else ""


def wmdp_table(
    results: Mapping,
    methods: Sequence[str],
    epoch: int,
    topics: Sequence[str],
    method_epochs: Mapping[str, int] | None = None,
) -> Table:
    """T2: accuracy x100 on each evaluated topic and on MMLU; a left-out topic is noted; a
    method with its own table epoch (method_table_epochs) reports that one."""
    columns = tuple(column("WMDP", name) for name in catalog.wmdp_table(topics))
    refs = references("wmdp")
    groups = {"WMDP": ("wmdp", "", epoch)}
    own = {"wmdp": dict(method_epochs or {})}
    rows, values = _rows_and_values(results, groups, refs, methods, columns, own)
    notes = tuple(
        f"{label} is not evaluated: the topic is left out (config wmdp.topics)."
        for topic, label in catalog.WMDP_TOPIC_LABELS.items()
        if topic not in topics
    )
    return Table(
        "table_2_wmdp",
        f"WMDP (epoch {epoch}{own_epochs(method_epochs)}): zero-shot accuracy x100 (lm-eval).",
        columns,
        rows,
        frozenset(refs),
        values,
        notes,
    )


def tofu_table(
    results: Mapping,
    methods: Sequence[str],
    epoch: int,
    splits: Sequence[str],
    method_epochs: Mapping[str, int] | None = None,
) -> Table:
    """T3: every forget split side by side; Finetuned and Retain first; a method with its own
    table epoch (method_table_epochs) reports that one."""
    columns = tuple(column(split, name) for split in splits for name in catalog.TOFU_TABLE)
    groups = {split: ("tofu", f"-{split}", epoch) for split in splits}
    refs = references("tofu")
    own = {"tofu": dict(method_epochs or {})}
    rows, values = _rows_and_values(results, groups, refs, methods, columns, own)
    return Table(
        "table_3_tofu",
        f"TOFU (epoch {epoch}{own_epochs(method_epochs)}): forget quality is the KS-test "
        "p-value against the retain oracle.",
        columns,
        rows,
        frozenset(refs),
        values,
    )


# ------------------------------------------------------------------ T4: robustness

BENCHMARK_LABELS = {b.name: b.label for b in BENCHMARKS.values()}


def attack_label(attack: str) -> str:
    """relearn_s16 -> "Relearn 16 steps", quantize_int4 -> "Int4"."""
    kind, _, size = attack.partition("_")
    if kind == "relearn":
        return f"Relearn {size.removeprefix('s')} steps"
    if kind == "quantize":
        return size.capitalize()
    return "No attack" if attack == NO_ATTACK else attack


def robustness_table(
    results: Mapping[tuple[str, str, int, str], Mapping[str, Any]],
    rows: Mapping[str, Sequence[tuple[str, int]]],
    attacks: Sequence[str],
    topics: Sequence[str],
    references: Mapping[str, Sequence[str]],
) -> Table:
    """T4: per benchmark, each attacked row's metrics without attack, after each attack, and
    what the attack recovered (attacked minus unattacked; for a forget metric, knowledge
    brought back). rows: benchmark -> (row, epoch); references: benchmark -> reference rows."""
    columns = [Column("", NO_ATTACK, attack_label(NO_ATTACK), "none")]
    for attack in attacks:
        columns.append(Column("", attack, attack_label(attack), "none"))
        columns.append(Column("", f"recovered:{attack}", f"Δ {attack_label(attack)}", "none"))
    keys, labels, formats, reference_keys = [], {}, {}, set()
    values: dict[tuple[str, Column], float | None] = {}
    for benchmark, attacked in rows.items():
        for row, epoch in attacked:
            for name in catalog.robustness_metrics(benchmark, topics):
                spec = catalog.METRICS[name]
                key = f"{benchmark}:{row}:{name}"
                keys.append(key)
                labels[key] = (
                    f"{BENCHMARK_LABELS.get(benchmark, benchmark)} · {display(row)}"
                    f" · {spec.label} {ARROWS[spec.direction]}"
                )
                formats[key] = (spec.scale, spec.digits)
                if row in references.get(benchmark, ()):
                    reference_keys.add(key)
                plain = metric(results.get((benchmark, row, epoch, NO_ATTACK)), name)
                values[(key, columns[0])] = plain
                for index, attack in enumerate(attacks):
                    after = metric(results.get((benchmark, row, epoch, attack)), name)
                    values[(key, columns[1 + 2 * index])] = after
                    both = plain is not None and after is not None
                    values[(key, columns[2 + 2 * index])] = after - plain if both else None
    return Table(
        "table_4_robustness",
        "Robustness: each row's metric without attack, after each attack (relearning: a few "
        "fine-tuning steps on forget data; IntN: weights rounded to N bits), and Δ, the change "
        "the attack made (on a forget metric: the knowledge it brought back).",
        tuple(columns),
        tuple(keys),
        frozenset(reference_keys),
        values,
        labels=labels,
        row_formats=formats,
        mark_best=False,
    )
