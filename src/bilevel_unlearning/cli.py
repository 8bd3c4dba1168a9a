"""Command line: one sub-command per workflow step, runnable by hand on a cluster node.

Settings arrive as JSON strings (the workflow passes its config sections as rule params, so a
changed setting reruns exactly the jobs it affects).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.cli_paper import add_paper_path_commands
from bilevel_unlearning.numerics import pin_cpu_numerics, run_under_emulator

log = logging.getLogger("bilevel_unlearning")


def _json(text: str) -> Any:
    return json.loads(text)


def _set_threads(threads: int) -> None:
    """torch's intra-op threads (the config's count; the pins set OpenMP's and MKL's too) and
    the deterministic flags where the job asked for them."""
    from bilevel_unlearning.numerics import apply_torch_settings

    apply_torch_settings(threads)


def cmd_generate(args: argparse.Namespace) -> None:
    from bilevel_unlearning.data.run import data_step

    data_step(benchmark=args.benchmark, seed=args.seed, sizes=args.sizes, out=Path(args.out))


def cmd_train_tokenizer(args: argparse.Namespace) -> None:
    from bilevel_unlearning.models.run import train_tokenizer_step

    train_tokenizer_step(
        texts=args.texts, out=Path(args.out), vocab_size=args.vocab_size, seed=args.seed
    )


def cmd_pretrain(args: argparse.Namespace) -> None:
    from bilevel_unlearning.models.run import pretrain_step

    _set_threads(args.threads)
    pretrain_step(
        tokenizer_dir=Path(args.tokenizer),
        corpus=Path(args.corpus),
        out=Path(args.out),
        settings=args.settings,
        seed=args.seed,
    )


def cmd_finetune(args: argparse.Namespace) -> None:
    from bilevel_unlearning.models.run import finetune_step

    _set_threads(args.threads)
    finetune_step(
        benchmark=args.benchmark,
        role=args.role,
        base=Path(args.base),
        data_dir=Path(args.data),
        corpus=Path(args.corpus) if args.corpus else None,
        out=Path(args.out),
        settings=args.settings,
        seed=args.seed,
        precision=args.precision,
        strategy=args.strategy,
    )


def cmd_unlearn(args: argparse.Namespace) -> None:
    from bilevel_unlearning.unlearn.run import unlearn_step

    _set_threads(args.threads)
    unlearn_step(
        benchmark=args.benchmark,
        method=args.method,
        model_dir=Path(args.model),
        data_dir=Path(args.data),
        out=Path(args.out),
        settings=args.settings,
        seed=args.seed,
        precision=args.precision,
        strategy=args.strategy,
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from bilevel_unlearning.evaluation.run import evaluate_step

    _set_threads(args.threads)
    evaluate_step(
        benchmark=args.benchmark,
        run=args.run,
        epoch=args.epoch,
        model_dir=Path(args.model),
        data=Path(args.data),
        out=Path(args.out),
        settings=args.settings,
        reference=Path(args.reference) if args.reference else None,
        seed=args.seed,
        precision=args.precision,
        source=args.source,
        attack=args.attack,
    )


def cmd_attack(args: argparse.Namespace) -> None:
    from bilevel_unlearning.attack.run import attack_step

    _set_threads(args.threads)
    attack_step(
        benchmark=args.benchmark,
        attack=args.attack,
        model_dir=Path(args.model),
        data=Path(args.data),
        out=Path(args.out),
        settings=args.settings,
        seed=args.seed,
        precision=args.precision,
        heldout_split=args.heldout_split and Path(args.heldout_split),
    )


def cmd_heldout_split(args: argparse.Namespace) -> None:
    from bilevel_unlearning.attack.heldout import heldout_split
    from bilevel_unlearning.io import write_json

    split = heldout_split(args.benchmark, Path(args.data), args.settings, args.seed)
    write_json(args.out, split)
    for name, items in split["heldout_items"].items():
        log.info("%s: %d of %d items held out", name, len(items), split["items"][name])


def cmd_report(args: argparse.Namespace) -> None:
    from bilevel_unlearning.report.run import report_step

    name = args.table or args.figure
    report_step(name=name, inputs=args.inputs, settings=args.settings, out=Path(args.out))


def merged_config(paths: list[str]) -> dict:
    """Config files merged as Snakemake merges --configfile: later ones win, key by key."""
    from snakemake.utils import update_config

    from bilevel_unlearning.config import read_yaml

    merged: dict = {}
    for path in paths:
        update_config(merged, read_yaml(path))
    return merged


def cmd_check_config(args: argparse.Namespace) -> None:
    """What Snakemake will see: config/config.yaml with the given files merged over it."""
    from bilevel_unlearning.config import ConfigError, validate_config

    try:
        merged = merged_config([args.base, *args.configfiles])
        validate_config(merged)
    except ConfigError as error:
        raise SystemExit(str(error)) from None
    print(f"valid: {' + '.join(map(str, [args.base, *args.configfiles]))}")


def cmd_manifest(args: argparse.Namespace) -> None:
    from bilevel_unlearning.report.manifest import build_manifest

    build_manifest([Path(p) for p in args.outputs], [Path(p) for p in args.results], Path(args.out))


def cmd_verify(args: argparse.Namespace) -> None:
    from bilevel_unlearning.report.manifest import verify_manifest

    for manifest in args.manifest:
        problems = verify_manifest(Path(manifest))
        if problems:
            raise SystemExit("verification failed:\n" + "\n".join(f"  {p}" for p in problems))
        print(f"verified: every checksum in {manifest} matches")


def cmd_compare(args: argparse.Namespace) -> None:
    from bilevel_unlearning.report import manifest

    tables = [Path(p) for p in args.inputs]
    ok = manifest.compare_expected(tables, Path(args.expected), Path(args.out))
    print(f"expected tables: {'all cells within tolerance' if ok else 'DIFFERENCES, see'} "
          f"{args.out}")  # fmt: skip


def cmd_reproduction(args: argparse.Namespace) -> None:
    from bilevel_unlearning.io import read_json, read_yaml
    from bilevel_unlearning.report import reproduction as r

    if args.comparison:
        comparison = read_json(args.comparison, made_by="its compare_expected rule")
        lines, intro = r.expected_lines(comparison, args.expected_name), r.EXPECTED_INTRO
    else:
        from bilevel_unlearning.report.tables import load_results

        references = read_yaml(args.reference)
        lines = r.published_lines(load_results(args.inputs), references, args.epochs)
        intro = r.PUBLISHED_INTRO
    r.write_reproduction(lines, intro, Path(args.out))


def cmd_sanity(args: argparse.Namespace) -> None:
    from bilevel_unlearning.sanity.run import sanity_step

    _set_threads(args.threads)
    settings = {**args.settings, "base": args.base}
    sanity_step(
        benchmark=args.benchmark,
        data=Path(args.data),
        models=Path(args.models),
        out=Path(args.out),
        settings=settings,
    )


def cmd_sanity_report(args: argparse.Namespace) -> None:
    from bilevel_unlearning.sanity.report import report_step

    report_step([Path(p) for p in args.inputs], Path(args.json), Path(args.markdown))


def cmd_free_port(args: argparse.Namespace) -> None:
    from bilevel_unlearning.runtime import free_port

    print(free_port())


def add_numerics_arguments(parser: argparse.ArgumentParser) -> None:
    """A computing job's numerics: pinned in main() before torch loads (numerics.py)."""
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the config's)")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic GPU kernels: torch's deterministic algorithms, cuBLAS workspace, "
        "cuDNN without autotuning (config key deterministic)",
    )


def add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    """A training job's precision and how its processes share the work (placement.py)."""
    from bilevel_unlearning.runtime import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument(
        "--strategy",
        choices=["single", "ddp", "fsdp"],
        default="single",
        help="how the processes share the work (runtime.parallel_strategy); fsdp shards",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bilevel-unlearning", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="write a miniature benchmark's data files")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--sizes", type=_json, required=True, help="the config's miniature section")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train-tokenizer", help="train the miniature's BPE tokenizer")
    p.add_argument("--texts", nargs="+", required=True, help="JSONL files with text fields")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train_tokenizer)

    def training_parser(name: str, helptext: str) -> argparse.ArgumentParser:
        """Arguments shared by the pretraining and fine-tuning commands."""
        p = sub.add_parser(name, help=helptext)
        p.add_argument(
            "--corpus",
            required=name == "pretrain",
            help="the general corpus (JSONL); finetune replays it (none for a hub base model)",
        )
        p.add_argument("--settings", type=_json, required=True, help="models.pretrain/finetune")
        p.add_argument("--seed", type=int, required=True)
        add_numerics_arguments(p)
        p.add_argument("--out", required=True)
        return p

    p = training_parser("pretrain", "train the base model from scratch on the general corpus")
    p.add_argument("--tokenizer", required=True)
    p.set_defaults(func=cmd_pretrain)

    p = training_parser("finetune", "fine-tune the base into a benchmark's target or oracle")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--role", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--data", required=True, help="the benchmark's data folder")
    add_parallel_arguments(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("unlearn", help="unlearn with one method, a checkpoint per epoch")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--method", type=_json, required=True, help="a `methods` entry")
    p.add_argument("--settings", type=_json, required=True, help="the `unlearn` entry")
    p.add_argument("--model", required=True, help="the model unlearning starts from")
    p.add_argument("--data", required=True, help="the benchmark's data folder")
    p.add_argument("--seed", type=int, required=True)
    add_parallel_arguments(p)
    add_numerics_arguments(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_unlearn)

    p = sub.add_parser("evaluate", help="evaluate one model on its benchmark into one JSON")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--run", required=True, help="the row's name: a run or a reference model")
    p.add_argument("--epoch", type=int, required=True, help="0 for a model not unlearned")
    p.add_argument("--model", required=True, help="the HF model folder")
    p.add_argument("--data", required=True, help="the benchmark's data folder")
    p.add_argument("--settings", type=_json, required=True)
    p.add_argument("--reference", help="the oracle's evaluation JSON (absent for the oracle)")
    p.add_argument("--attack", default="none", help="the attack the model went through, if any")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--precision", default="float32")
    p.add_argument("--source", choices=["miniature", "hub"], default="miniature")
    add_numerics_arguments(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("attack", help="attack one model (relearning, quantization) into a folder")
    p.add_argument("--benchmark", required=True)
    p.add_argument(
        "--attack", required=True, help="relearn_s<N>, relearn_heldout_s<N> or quantize_int<b>"
    )
    p.add_argument("--model", required=True, help="the HF model folder attacked")
    p.add_argument("--data", required=True, help="the benchmark's data folder")
    p.add_argument("--settings", type=_json, required=True, help="runs.attack_settings")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--precision", default="float32")
    add_numerics_arguments(p)
    p.add_argument("--heldout-split", help="relearn_heldout: the split's file (attack.heldout)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("heldout-split", help="split forget facts for held-out relearning")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data", required=True, help="the benchmark's data folder")
    p.add_argument("--settings", type=_json, required=True, help="runs.heldout_settings")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_heldout_split)

    p = sub.add_parser("report", help="one table or figure of paper_figures/ from result files")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", help="table_1_muse ... table_4_robustness, table_s1_muse_mia")
    which.add_argument("--figure", help="figure_1_geometry ... figure_5_relearning")
    p.add_argument("--inputs", nargs="+", required=True, help="evaluation JSONs or step logs")
    p.add_argument("--settings", type=_json, required=True)
    p.add_argument("--out", required=True, help="output path without suffix")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "check-config",
        help="parse config files (file, line and column of a syntax error; duplicate keys) "
        "and validate them merged over config/config.yaml, as the workflow will",
    )
    p.add_argument("configfiles", nargs="*", help="the files given to --configfile")
    p.add_argument("--base", default="config/config.yaml")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("manifest", help="checksums of the paper outputs and their result files")
    p.add_argument("--outputs", nargs="+", required=True)
    p.add_argument("--results", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("verify", help="recompute the manifest's checksums; fail on a mismatch")
    p.add_argument("--manifest", nargs="+", required=True, help="one or more MANIFEST*.json")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("compare", help="produced tables against the expected tables")
    p.add_argument("--inputs", nargs="+", required=True, help="the produced table CSVs")
    p.add_argument("--expected", required=True, help="folder of the committed expected tables")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("reproduction", help="table_reproduction: this run against its references")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--reference", help="config/reference_results.yaml (published numbers)")
    which.add_argument("--comparison", help="the expected-table comparison's JSON (miniature)")
    p.add_argument("--inputs", nargs="*", default=[], help="evaluation JSONs (with --reference)")
    p.add_argument("--epochs", type=_json, default={}, help="table epoch per benchmark")
    p.add_argument("--expected-name", default="default", help="config/expected/<name>")
    p.add_argument("--out", required=True, help="path without suffix: writes .md and .csv")
    p.set_defaults(func=cmd_reproduction)

    p = sub.add_parser("sanity", help="probe target vs oracle on forget and retain data")
    p.add_argument("--benchmark", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--models", required=True, help="results/{benchmark}/models")
    p.add_argument("--base", required=True, help="the base model (WMDP's reference)")
    p.add_argument("--settings", type=_json, required=True)
    add_numerics_arguments(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sanity)

    p = sub.add_parser("sanity-report", help="gather per-benchmark sanity probes into one table")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--markdown", required=True)
    p.set_defaults(func=cmd_sanity_report)
    p = sub.add_parser("free-port", help="a free TCP port on this node (multi-GPU rendezvous)")
    p.set_defaults(func=cmd_free_port)
    add_paper_path_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if hasattr(args, "threads"):  # a computing job: pin its CPU kernels before torch loads
        run_under_emulator(sys.argv[1:] if argv is None else list(argv))
        pins = pin_cpu_numerics(args.threads, deterministic=args.deterministic)
        log.info("numerics: %s", pins)
    from bilevel_unlearning.op_census import recording

    with recording(args.command):  # BILEVEL_OP_CENSUS set: scripts/cpu_census.py
        args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
