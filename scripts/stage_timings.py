"""Print the time each job took, by stage, from the Snakemake `benchmark:` files of a run.

Usage: python scripts/stage_timings.py [results_dir]
Job seconds add up to CPU-side work; with --cores 2 two jobs run at once, so a stage's wall
time is shorter than its sum. Time a whole run with `time make reproduce` for the wall figure.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def job_seconds(results: Path) -> dict[str, dict[str, float]]:
    """{stage: {job: seconds}} from results/benchmarks/{stage}/{job}.tsv."""
    stages: dict[str, dict[str, float]] = {}
    for tsv in sorted((results / "benchmarks").glob("*/*.tsv")):
        with tsv.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        stages.setdefault(tsv.parent.name, {})[tsv.stem] = float(row["s"])
    return stages


def main(results: Path) -> None:
    stages = job_seconds(results)
    if not stages:
        sys.exit(f"no benchmark files under {results}/benchmarks: run the workflow first")
    print("| stage | job | seconds |\n|---|---|---:|")
    for stage, jobs in stages.items():
        for job, seconds in jobs.items():
            print(f"| {stage} | {job} | {seconds:.1f} |")
        print(f"| **{stage}** | all jobs | **{sum(jobs.values()):.1f}** |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
