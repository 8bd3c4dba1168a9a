"""Make config/expected/<name>/: the reference tables (seed 0) and their seed bands.

Runs the whole workflow (data, models, unlearning, evaluation, tables; the robustness part
too) once per seed 0..N-1, each in its own folder under --workdir with a copy of config/, then
writes beside each committed table its band over the seeds (report.bands). Each seed's run is
incremental: an interrupted `make expected-bands` picks up where it stopped.

    python scripts/expected_bands.py --name tiny --seeds 5       # tests/config/tiny.yaml
    python scripts/expected_bands.py --name default --seeds 5    # config/config.yaml alone

Slow by design (N whole runs; about 5 min a seed for tiny, 16 for default on 2 cores): run
when a change moves the numbers, not in `make reproduce` or `make test`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bilevel_unlearning.report.bands import band_path, read_bands, table_bands, write_bands
from bilevel_unlearning.report.manifest import compare_tables, read_table_csv, tolerance

REPO = Path(__file__).resolve().parents[1]
OVERLAYS = {"default": [], "tiny": [REPO / "tests" / "config" / "tiny.yaml"]}
TARGETS = ("all", "robustness")


def run_seed(name: str, seed: int, workdir: Path, cores: int) -> Path:
    """One seed's whole workflow in its own folder; its paper_figures/ folder."""
    folder = workdir / name / f"seed_{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "config", folder / "config", dirs_exist_ok=True)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow/Snakefile")]
    command += ["--directory", str(folder), "--cores", str(cores), "--rerun-incomplete"]
    overlay = folder / "seed.yaml"  # last, over the named config: this seed, no comparison
    overlay.write_text(f"seed: {seed}\nexpected_tables: null\n")
    command += [*TARGETS, "--configfile", *map(str, OVERLAYS[name]), str(overlay)]
    start = time.monotonic()
    log = folder / "snakemake.log"
    with log.open("w") as handle:
        done = subprocess.run(command, cwd=folder, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"seed {seed} failed (exit {done.returncode}): see {log}")
    print(f"{name} seed {seed}: {time.monotonic() - start:.0f} s", flush=True)
    return folder / "paper_figures"


def rewrite_references(name: str, figures: Path) -> None:
    """Seed 0's tables as the new references; each cell checked against its committed band."""
    expected = REPO / "config" / "expected" / name
    outside = []
    for table in sorted(t for t in figures.glob("table_*.csv") if "reproduction" not in t.name):
        reference = expected / table.name
        cells = compare_tables(table, reference, read_bands(band_path(reference)))
        moved = [c for c in cells if c["status"] != "equal"]
        outside += [c for c in cells if c["status"] == "outside"]
        print(f"{name}/{table.name}: {len(moved)} of {len(cells)} cells moved")
        for c in moved:
            print(f"  {c['row']} / {c['column']}: {c['expected']} -> {c['produced']}")
    if outside:
        raise SystemExit(f"{len(outside)} cells left their bands: rerun all seeds instead")
    for table in figures.glob("table_*.csv"):
        if "reproduction" not in table.name:
            shutil.copyfile(table, expected / table.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", choices=sorted(OVERLAYS), required=True)
    parser.add_argument("--seeds", type=int, default=5, help="N: seeds 0..N-1 (N >= 5)")
    parser.add_argument("--workdir", type=Path, default=REPO / ".bands")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="run nothing: write the tables and bands from the seed folders already there",
    )
    parser.add_argument(
        "--reference-only",
        action="store_true",
        help="rerun seed 0 alone and rewrite the reference tables, keeping the committed bands: "
        "for a change that moves bits only (a kernel), which the bands over seeds already "
        "cover; refuses if a new reference cell falls outside its band",
    )
    args = parser.parse_args()
    if args.reference_only:
        rewrite_references(args.name, run_seed(args.name, 0, args.workdir, args.cores))
        return
    if args.seeds < 2:
        raise SystemExit("--seeds must be at least 2 (a band needs a spread); use 5 or more")
    if args.collect_only:
        figures = [
            args.workdir / args.name / f"seed_{s}" / "paper_figures" for s in range(args.seeds)
        ]
    else:
        figures = [run_seed(args.name, s, args.workdir, args.cores) for s in range(args.seeds)]
    expected = REPO / "config" / "expected" / args.name
    expected.mkdir(parents=True, exist_ok=True)
    # the paper tables and T4; not the reproduction table, which compares with these
    for table in sorted(t for t in figures[0].glob("table_*.csv") if "reproduction" not in t.name):
        shutil.copyfile(table, expected / table.name)  # the reference: the config's seed 0
        tables = [read_table_csv(f / table.name) for f in figures]
        write_bands(band_path(expected / table.name), table_bands(tables, tolerance))
        print(f"wrote {expected / table.name} and its band over {args.seeds} seeds")


if __name__ == "__main__":
    main()
