"""Print the time each job took, by stage, from the Snakemake `benchmark:` files of a run.

Usage: python scripts/stage_timings.py [results_dir] [--jobs]
Job seconds add up to CPU-side work; with --cores 2 two jobs run at once, so a stage's wall
time is shorter than its sum. Time a whole run with `time make reproduce` for the wall figure.
Evaluations of attacked models (`make robustness`) are their own stage, "evaluate (attacked)".
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path


def stage_of(relative: Path) -> str:
    """benchmarks/<stage>/[<benchmark>/]<job>.tsv -> its stage; attacked evaluations apart
    (their job names carry the attack: <row>_<attack>_epoch_<k>)."""
    stage = relative.parts[0]
    if stage == "evaluate" and "_none_epoch_" not in relative.name:
        return "evaluate (attacked)"
    return stage


def job_seconds(results: Path) -> dict[str, dict[str, float]]:
    """{stage: {job: seconds}} from results/benchmarks/<stage>/**/<job>.tsv."""
    root = results / "benchmarks"
    stages: dict[str, dict[str, float]] = {}
    for tsv in sorted(root.rglob("*.tsv")):
        with tsv.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        relative = tsv.relative_to(root)
        job = str(relative.with_suffix("").relative_to(relative.parts[0]))
        stages.setdefault(stage_of(relative), {})[job] = float(row["s"])
    return stages


def main(results: Path, per_job: bool) -> None:
    stages = job_seconds(results)
    if not stages:
        sys.exit(f"no benchmark files under {results}/benchmarks: run the workflow first")
    print("| stage | jobs | seconds | median per job |\n|---|---:|---:|---:|")
    for stage, jobs in stages.items():
        if per_job:
            for job, seconds in jobs.items():
                print(f"| {stage}: {job} | 1 | {seconds:.1f} | |")
        values = list(jobs.values())
        print(
            f"| **{stage}** | {len(values)} | **{sum(values):.1f}** "
            f"| {statistics.median(values):.1f} |"
        )


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--jobs"]
    main(Path(arguments[0] if arguments else "results"), "--jobs" in sys.argv[1:])
