"""The sanity report: every benchmark's probes in one Markdown table, target beside oracle,
then the checks. Torch-free: the report job only reads the probes' JSONs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.io import read_json, write_json, write_text


def comparison(probe: str, target: str, oracle: str) -> dict[str, str]:
    """One row of the report: a probe, the model unlearning starts from, and its reference."""
    return {"probe": probe, "target": target, "oracle": oracle}


def shown_score(probe: str, value: float) -> str:
    """A probe's score as the tables show it: MUSE's probes are catalog metrics (x100, two
    decimals, as in T1); TOFU's ROUGE and WMDP's accuracies are fractions (three decimals)."""
    if probe in catalog.METRICS:
        return f"{catalog.shown(probe, value):.2f}"
    return f"{value:.3f}"


def report_table(results: Sequence[Mapping[str, Any]]) -> str:
    """One Markdown table: a row per benchmark and probe, target beside oracle, then the checks."""
    lines = [
        "| benchmark | probe | target model | score | oracle model | score |",
        "|---|---|---|---:|---|---:|",
    ]
    for result in results:
        scores = result["scores"]
        for row in result["rows"]:
            target, oracle, probe = row["target"], row["oracle"], row["probe"]
            shown = {role: shown_score(probe, scores[role][probe]) for role in (target, oracle)}
            lines.append(
                f"| {result['benchmark']} | {probe} | {target} | {shown[target]} "
                f"| {oracle} | {shown[oracle]} |"
            )
    lines.append("")
    for result in results:
        for check, passed in result["checks"].items():
            lines.append(f"- {result['benchmark']}: {check}: {'pass' if passed else 'FAIL'}")
    return "\n".join(lines) + "\n"


def report_step(inputs: Sequence[Path], json_out: Path, markdown_out: Path) -> None:
    results = [read_json(p, made_by="its sanity_<benchmark> rule") for p in inputs]
    for path, result in zip(inputs, results, strict=True):
        catalog.check_result_format(result, path, "sanity_<benchmark>")
    table = report_table(results)
    write_json(
        json_out,
        {"benchmarks": results, "all_checks_pass": all(all(r["checks"].values()) for r in results)},
    )
    write_text(markdown_out, table)
    print(table)
