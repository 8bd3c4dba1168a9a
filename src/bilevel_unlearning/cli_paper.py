"""The command line's paper-path sub-commands (bilevel_unlearning.cli registers them): hub
downloads (the only code that reaches the hub), the rehearsal's hub mirror, the GPU plan, the
paper settings document and MUSE's steps per epoch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bilevel_unlearning.benchmarks import BENCHMARKS

# -- download (hub access happens only here) and plan (GPU memory and runtime) ------------------


def cmd_download(args: argparse.Namespace) -> None:
    from bilevel_unlearning.data.run import download_step

    model = retain_log = None
    if args.what == "retain-log":
        if not (args.repo and args.path):
            raise SystemExit("download --what retain-log needs --repo and --path")
        retain_log = {"repo": args.repo, "path": args.path}
    if args.what == "model":
        if not args.repo:
            raise SystemExit("download --what model needs --repo")
        model = {"repo": args.repo, "revision": args.revision, "tokenizer": args.tokenizer}
    download_step(
        benchmark=args.benchmark,
        out=Path(args.out),
        datasets=args.datasets,
        topics=args.topics,
        bio_forget_file=args.bio_forget_file,
        mirror=Path(args.mirror) if args.mirror else None,
        model=model,
        retain_log=retain_log,
    )


def cmd_muse_steps(args: argparse.Namespace) -> None:
    """What the MUSE corpus gives per epoch; the authors' runs imply 102 (News) and 139
    (Books) steps at batch 4, i.e. 405-408 and 553-556 chunks of 2048 tokens."""
    from bilevel_unlearning.models.hf import load_tokenizer
    from bilevel_unlearning.unlearn.data import muse_data, steps_per_epoch

    tokenizer = load_tokenizer(args.tokenizer)
    data = muse_data(tokenizer, Path(args.data), args.max_length, args.corpus_form)
    chunks = len(data.forget[0])
    steps = steps_per_epoch(data, args.batch_size)
    print(
        f"{args.data}: {chunks} forget chunks of {args.max_length} tokens ({args.corpus_form}), "
        f"{len(data.retain)} retain chunks; {steps} steps per epoch at batch {args.batch_size}"
    )


def cmd_paper_settings(args: argparse.Namespace) -> None:
    from bilevel_unlearning import paper_settings
    from bilevel_unlearning.io import read_yaml, write_text

    repo = Path(args.repo)
    text = paper_settings.render(
        paper_settings.paper_config(repo), read_yaml(repo / "config" / "paper_sources.yaml")
    )
    write_text(args.out, text)
    print(f"wrote {args.out}")


def cmd_plan(args: argparse.Namespace) -> None:
    from bilevel_unlearning import plan

    print(plan.plan_table(plan.load_jobs(args.jobs)), end="")


def cmd_rehearsal_hub(args: argparse.Namespace) -> None:
    from bilevel_unlearning.cli import merged_config
    from bilevel_unlearning.data.rehearsal import write_rehearsal_hub

    config = merged_config([args.base, *args.configfile])
    repos = write_rehearsal_hub(config, Path(args.out), Path(args.bio_forget_file))
    print(f"wrote {len(repos)} hub-shaped repos into {args.out}")


def add_paper_path_commands(sub: Any) -> None:
    """The sub-commands of the paper path: download, rehearsal-hub, plan, paper-settings and
    muse-steps."""
    from bilevel_unlearning.cli import _json  # the shared argument type (cli imports us first)

    p = sub.add_parser("download", help="fetch a real benchmark's data or a model from the hub")
    p.add_argument("--what", choices=["data", "model", "retain-log"], required=True)
    p.add_argument("--benchmark", choices=list(BENCHMARKS))
    p.add_argument("--datasets", type=_json, help="role -> hub dataset id (config hub.*.datasets)")
    p.add_argument("--topics", nargs="+", choices=["bio", "cyber"], default=["bio", "cyber"])
    p.add_argument("--bio-forget-file", help="the gated bio_remove_dataset.jsonl (wmdp, bio)")
    p.add_argument("--mirror", help="read hub-shaped files from this folder instead of the hub")
    p.add_argument("--repo", help="model repo id (--what model), dataset repo (retain-log)")
    p.add_argument("--path", help="the file in the repo (--what retain-log)")
    p.add_argument("--revision", help="model branch, tag or commit (default: main)")
    p.add_argument("--tokenizer", help="repo to take the tokenizer files from instead")
    p.add_argument("--out", required=True, help="results/{benchmark}/data or a model folder")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser(
        "rehearsal-hub",
        help="hub-shaped dataset and model repos of a hub config, for hub.mirror (make rehearse)",
    )
    p.add_argument("--base", default="config/config.yaml", help="merged under --configfile")
    p.add_argument("--configfile", nargs="+", required=True, help="e.g. config/paper.yaml")
    p.add_argument("--out", required=True, help="the mirror folder")
    p.add_argument("--bio-forget-file", required=True, help="where to write the gated bio file")
    p.set_defaults(func=cmd_rehearsal_hub)

    p = sub.add_parser("plan", help="GPU memory per GPU and runtime of unlearning jobs")
    p.add_argument("--jobs", required=True, help="JSON list of job dicts, or a JSON file")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser(
        "paper-settings", help="docs/paper_settings.md: the paper config's settings and sources"
    )
    p.add_argument("--repo", default=".", help="the repository root")
    p.add_argument("--out", default="docs/paper_settings.md")
    p.set_defaults(func=cmd_paper_settings)
    p = sub.add_parser(
        "muse-steps",
        help="chunks and optimizer steps per epoch a MUSE forget corpus gives (authors: "
        "checkpoint-102 on News, 139 on Books at batch 4)",
    )
    p.add_argument("--data", required=True, help="results/<muse benchmark>/data")
    p.add_argument("--tokenizer", required=True, help="a folder with the tokenizer")
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--corpus-form", choices=["authors", "documents"], default="authors")
    p.set_defaults(func=cmd_muse_steps)
