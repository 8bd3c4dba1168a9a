"""Start-up cost of a job: what its process imports before it computes, side by side.

Each evaluation job is a fresh process (one per row, attack and epoch: 75 in the default run),
so seconds of imports per job add up to minutes. Before, every evaluation job imported all
three evaluators (rouge-score, whose nltk import pulls in scipy.stats, and lm-eval); now each
imports its own benchmark's (evaluation/run.py:benchmark_metrics). Planning a DAG imported
torch through models/recipes.py; now it imports none.

    python benchmarks/startup.py [--repeats 5]

Prints, per variant, the median wall time of a fresh `python -c "import ..."` over interleaved
repeats (A B A B ..., so machine drift cancels), and the ratio to its "before" variant.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

EVALUATORS = "bilevel_unlearning.evaluation.{}"
VARIANTS = {
    # what an evaluation job imported before: every evaluator
    "evaluation job, before (all evaluators)": [
        "bilevel_unlearning.evaluation.run",
        *(EVALUATORS.format(b) for b in ("muse", "tofu", "wmdp")),
    ],
    "WMDP evaluation job, now": ["bilevel_unlearning.evaluation.run", "lm_eval"],
    "MUSE evaluation job, now": [
        "bilevel_unlearning.evaluation.run",
        EVALUATORS.format("muse"),
    ],
    "planning, before (recipes with torch)": ["bilevel_unlearning.models.train", "jsonschema"],
    "planning, now (torch-free)": [
        "bilevel_unlearning.models.recipes",
        "bilevel_unlearning.config",
        "bilevel_unlearning.runs",
        "bilevel_unlearning.plan",
    ],
}
BEFORE = {
    "WMDP evaluation job, now": "evaluation job, before (all evaluators)",
    "MUSE evaluation job, now": "evaluation job, before (all evaluators)",
    "planning, now (torch-free)": "planning, before (recipes with torch)",
}


def import_seconds(modules: list[str]) -> float:
    code = "; ".join(f"import {m}" for m in modules)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):  # interleaved: every variant once per round
        for name, modules in VARIANTS.items():
            times[name].append(import_seconds(modules))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"| process start-up ({args.repeats} interleaved repeats) | median s | vs before |")
    print("|---|---:|---:|")
    for name, median in medians.items():
        ratio = f"{median / medians[BEFORE[name]]:.2f}" if name in BEFORE else ""
        print(f"| {name} | {median:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
