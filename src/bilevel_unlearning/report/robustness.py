"""T4: robustness. Each attacked row's metrics without attack, after each attack, and what
the attack recovered; held-out relearning's forget metrics on its held-out items only
(attack.heldout)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.attack.heldout import heldout_metric
from bilevel_unlearning.report.style import ARROWS, display
from bilevel_unlearning.report.tables import BENCHMARK_LABELS, Column, Table, metric
from bilevel_unlearning.runs import (
    HELDOUT_RELEARN,
    NO_ATTACK,
    attack_kind,
    attack_size,
    heldout_part,
)


def attack_label(attack: str) -> str:
    """relearn_s16 -> "Relearn 16 steps", relearn_heldout_s16 -> "Relearn 16 steps, held-out",
    quantize_int4 -> "Int4"."""
    if attack == NO_ATTACK:
        return "No attack"
    if attack_kind(attack) == "relearn":
        return f"Relearn {attack_size(attack)} steps"
    if attack_kind(attack) == HELDOUT_RELEARN:
        return f"Relearn {attack_size(attack)} steps, held-out"
    return f"Int{attack_size(attack)}"


HeldoutSplits = Mapping[str, Mapping[str, Mapping[str, Any]]]  # benchmark -> part -> split


def attacked_metric(
    record: Mapping[str, Any] | None, name: str, split: Mapping[str, Any] | None
) -> float | None:
    """A metric as tables show it; with a held-out split, over its held-out items only."""
    if record is None or split is None:
        return metric(record, name)
    value = heldout_metric(record, name, split)
    return None if value is None else catalog.shown(name, value)


def heldout_notes(splits: HeldoutSplits) -> tuple[str, ...]:
    """How many items each held-out split scores, and by which rule."""
    if not splits:
        return ()
    counts = [
        f"{BENCHMARK_LABELS.get(b, b)}{'' if part == 'forget' else ' ' + part}: "
        + ", ".join(
            f"{name} {len(items)} of {split['items'][name]}"
            for name, items in split["heldout_items"].items()
        )
        + f" ({len(split['attacker_entities'])} of {split['entities']} entities relearned)"
        for b, parts in splits.items()
        for part, split in parts.items()
    ]
    rule = next(split["rule"] for parts in splits.values() for split in parts.values())
    return (
        "Held-out relearning: the attack relearns one half of the forget entities and its "
        f"forget metrics (before, after and Δ) are read on the other half's items only: {rule}. "
        "Items held out: " + "; ".join(counts) + ".",
    )


def robustness_table(
    results: Mapping[tuple[str, str, int, str], Mapping[str, Any]],
    rows: Mapping[str, Sequence[tuple[str, int]]],
    attacks: Sequence[str],
    topics: Sequence[str],
    references: Mapping[str, Sequence[str]],
    splits: HeldoutSplits | None = None,
) -> Table:
    """T4: per benchmark, each attacked row's metrics without attack, after each attack, and
    what the attack recovered (attacked minus unattacked; for a forget metric, knowledge
    brought back). A held-out relearning's columns read its forget metrics on the held-out
    items only, before and after (splits: benchmark -> heldout_part -> split).
    rows: benchmark -> (row, epoch); references: benchmark -> reference rows."""
    splits = splits or {}
    columns = [Column("", NO_ATTACK, attack_label(NO_ATTACK), "none")]
    for attack in attacks:
        columns.append(Column("", attack, attack_label(attack), "none"))
        columns.append(Column("", f"recovered:{attack}", f"Δ {attack_label(attack)}", "none"))
    keys, labels, formats, reference_keys = [], {}, {}, set()
    values: dict[tuple[str, Column], float | None] = {}
    for benchmark, attacked in rows.items():
        for row, epoch in attacked:
            split = splits.get(benchmark, {}).get(heldout_part(benchmark, row))
            for name in catalog.robustness_metrics(benchmark, topics):
                spec = catalog.METRICS[name]
                key = f"{benchmark}:{row}:{name}"
                keys.append(key)
                labels[key] = (
                    f"{BENCHMARK_LABELS.get(benchmark, benchmark)} · {display(row)}"
                    f" · {spec.label} {ARROWS[spec.direction]}"
                )
                formats[key] = spec.digits
                if row in references.get(benchmark, ()):
                    reference_keys.add(key)
                unattacked = results.get((benchmark, row, epoch, NO_ATTACK))
                values[(key, columns[0])] = metric(unattacked, name)
                for index, attack in enumerate(attacks):
                    heldout = split if attack_kind(attack) == HELDOUT_RELEARN else None
                    plain = attacked_metric(unattacked, name, heldout)
                    after = attacked_metric(
                        results.get((benchmark, row, epoch, attack)), name, heldout
                    )
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
        notes=heldout_notes(splits),
        labels=labels,
        row_digits=formats,
        mark_best=False,
    )
