"""Download stage: the real benchmarks and models from the Hugging Face hub, in our layout.

What each benchmark downloads (its splits, the WMDP topics, the gated bio corpus) and the
writers: fetch, convert, check against the layout, write atomically with provenance. The
layers it builds on, so the same conversion runs on hub data and on local files shaped like it:

- ``hub_client.py``: the only code that talks to the hub (errors, token hygiene, retries);
- ``hub_sources.py``: where hub-shaped records come from (the hub's parquet branch, a local
  mirror) and the converters from them to the records of one file of ``layout.py``;
- ``lm_eval_tasks.py``: the lm-eval task files over the downloaded questions (the WMDP
  download writes ``tasks/wmdp_bio.yaml``, ...), so evaluation never reaches the hub.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, TypeVar

from bilevel_unlearning.benchmarks import BENCHMARKS
from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.data import layout
from bilevel_unlearning.data.hub_client import (
    DownloadError,
    GatedDataError,
    HfHubClient,
    HubClient,
    RetryPolicy,
    with_retries,
)
from bilevel_unlearning.data.hub_sources import (
    HubSource,
    Records,
    Source,
    nonempty_text,
    select_fields,
    tofu_records,
)
from bilevel_unlearning.data.lm_eval_tasks import check_topics, task_files, write_lm_eval_tasks
from bilevel_unlearning.io import (
    atomic_path,
    record_checksums,
    sha256_file,
    sha256_tree,
    weight_files,
    write_json,
    write_jsonl,
    write_text,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

PARQUET_BRANCH = "refs/convert/parquet"
PROVENANCE_FILE = "provenance.json"
TOKEN_ENV = "HF_TOKEN"
BIO_FORGET_FILE = "bio_remove_dataset.jsonl"
BIO_FORGET_PATH = "corpora/bio-forget-corpus.jsonl"
HUB_BENCHMARKS = tuple(BENCHMARKS)

# Hub datasets of each benchmark, by role; the config's `hub.<benchmark>.datasets` overrides.
DEFAULT_DATASETS: dict[str, dict[str, str]] = {
    "muse_news": {"muse": "muse-bench/MUSE-News"},
    "muse_books": {"muse": "muse-bench/MUSE-Books"},
    # retain_logs: open-unlearning's evaluations of its retain models (read only when
    # tofu.forget_quality_reference is retain_logs, the paper's reference)
    "tofu": {"tofu": "locuslab/TOFU", "retain_logs": "open-unlearning/eval"},
    "wmdp": {
        "wmdp": "cais/wmdp",
        "corpora": "cais/wmdp-corpora",
        "mmlu": "cais/mmlu",
        "wikitext": "Salesforce/wikitext",  # the canonical home of the former `wikitext`
    },
}

WEIGHT_PATTERNS = {
    "safetensors": ("*.safetensors", "*.safetensors.index.json"),
    "bin": ("pytorch_model*.bin", "pytorch_model.bin.index.json"),
}
CONFIG_PATTERNS = ("config.json", "generation_config.json")
TOKENIZER_PATTERNS = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


# -- what each benchmark downloads ---------------------------------------------------------------


@dataclass(frozen=True)
class SplitSpec:
    """One layout file: which dataset role, config and split it comes from, and how."""

    path: str
    role: str
    config: str
    split: str
    convert: Callable[[Iterable[Mapping[str, Any]], Sequence[str]], Records] = select_fields


def _text_only(records: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> Records:
    return nonempty_text(records)


def muse_specs(topics: Sequence[str] = ()) -> list[SplitSpec]:
    """MUSE's layout files are named `{config}/{split}.jsonl` after the hub's."""
    specs = []
    for path in layout.MUSE_LAYOUT:
        config, split = path.removesuffix(".jsonl").split("/")
        specs.append(SplitSpec(path, "muse", config, split))
    return specs


def tofu_specs(topics: Sequence[str] = ()) -> list[SplitSpec]:
    """TOFU's layout files are `{config}.jsonl`; every config has one split, train."""
    return [
        SplitSpec(path, "tofu", path.removesuffix(".jsonl"), "train", tofu_records)
        for path in layout.TOFU_LAYOUT
    ]


def topic_files(topic: str) -> set[str]:
    """The WMDP layout files that belong to one topic."""
    return {
        f"corpora/{topic}-forget-corpus.jsonl",
        f"corpora/{topic}-retain-corpus.jsonl",
        f"questions/wmdp-{topic}.jsonl",
    }


# Fields of the hub's records that no stage reads: TOFU's paraphrased_question (open-unlearning
# offers it only as an option, configs/eval/tofu.yaml:31), the bio corpus's title and abstract
# (the authors' form feeds the whole raw line, which keeps them; the decoded form reads text).
UNREAD_FIELDS = ("paraphrased_question", "title", "abstract")

# WMDP's own retain corpora (about 1.9 GB): RMU retains on wikitext (the BLUR authors' rmu/
# utils.py:122-127), so nothing reads them and the hub download skips them.
UNREAD_WMDP_FILES = {f"corpora/{topic}-retain-corpus.jsonl" for topic in layout.WMDP_TOPICS}


def wmdp_layout(topics: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The WMDP layout files a topic selection needs: each topic's corpora and questions, plus
    the shared wikitext and MMLU files. With bio left out, no bio file exists at all, so a
    downstream stage that reads one fails loudly instead of using stale data."""
    chosen = set(check_topics(topics))
    dropped = set().union(*(topic_files(t) for t in layout.WMDP_TOPICS if t not in chosen))
    dropped |= UNREAD_WMDP_FILES
    return {path: fields for path, fields in layout.WMDP_LAYOUT.items() if path not in dropped}


def wmdp_specs(topics: Sequence[str]) -> list[SplitSpec]:
    """Hub files of the chosen topics; the bio forget corpus is gated and not among them."""
    specs = []
    for topic in check_topics(topics):
        if topic != "bio":
            specs.append(
                SplitSpec(
                    f"corpora/{topic}-forget-corpus.jsonl",
                    "corpora",
                    f"{topic}-forget-corpus",
                    "train",
                )
            )
        specs.append(SplitSpec(f"questions/wmdp-{topic}.jsonl", "wmdp", f"wmdp-{topic}", "test"))
    specs.append(SplitSpec("questions/mmlu.jsonl", "mmlu", "all", "test"))
    specs.append(
        SplitSpec(
            "wikitext/wikitext-2-raw-v1-test.jsonl",
            "wikitext",
            "wikitext-2-raw-v1",
            "test",
            _text_only,
        )
    )
    return specs


# family -> the splits its download fetches, given the chosen topics (only WMDP has topics)
SPECS = {"muse": muse_specs, "tofu": tofu_specs, "wmdp": wmdp_specs}


def benchmark_specs(benchmark: str, topics: Sequence[str] = layout.WMDP_TOPICS) -> list[SplitSpec]:
    """The splits a benchmark's download fetches (on WMDP: the chosen topics')."""
    if benchmark not in HUB_BENCHMARKS:
        raise ValueError(f"no hub download for {benchmark!r}; known: {', '.join(HUB_BENCHMARKS)}")
    return SPECS[bench(benchmark).family](topics)


def hub_layout(
    benchmark: str, topics: Sequence[str] = layout.WMDP_TOPICS
) -> dict[str, tuple[str, ...]]:
    """Layout files a hub download writes (the data folder also gets provenance.json), each
    with the fields it requires of the hub: those something reads (UNREAD_FIELDS are not
    required, so a hub schema change there is no crash at download)."""
    files = wmdp_layout(topics) if bench(benchmark).topics else dict(layout.LAYOUTS[benchmark])
    return {
        path: tuple(f for f in fields if f not in UNREAD_FIELDS) for path, fields in files.items()
    }


def hub_data_files(benchmark: str, topics: Sequence[str] = layout.WMDP_TOPICS) -> list[str]:
    """Relative paths the data download of a benchmark writes (for rules): the layout files,
    provenance.json and, for WMDP, the lm-eval task files."""
    tasks = task_files(topics) if bench(benchmark).topics else []
    return sorted([*hub_layout(benchmark, topics), *tasks, PROVENANCE_FILE])


# -- the gated WMDP bio forget corpus -----------------------------------------------------------


def bio_forget_message(path: Path | None) -> str:
    """How to obtain the gated bio corpus, where to put it, and how to run without it."""
    where = (
        f"put it at exactly: {path.resolve()}"
        if path is not None and path.name == BIO_FORGET_FILE
        else f"put it where the config's `wmdp.bio_forget_file` points (now: {path}), named "
        f"{BIO_FORGET_FILE}"
    )
    return (
        "The WMDP bio forget corpus is gated: it is not on the public hub and this workflow "
        "cannot download it.\n"
        "To use it:\n"
        "  1. Request access with the form linked from the dataset card of cais/wmdp-corpora "
        "(https://huggingface.co/datasets/cais/wmdp-corpora; background: https://www.wmdp.ai).\n"
        f"  2. Once granted, save the corpus as the file {BIO_FORGET_FILE} (JSON lines with the "
        "fields title, abstract, text) and\n"
        f"  3. {where}\n"
        "Or run without it: leave `bio` out of the config's `wmdp.topics` (e.g. `topics: "
        "[cyber]`); then only the cyber corpora and questions are downloaded and WMDP-Bio is "
        "neither unlearned nor evaluated."
    )


def require_bio_forget_file(path: str | os.PathLike[str] | None) -> Path:
    """The user-supplied bio forget corpus (a file, or a folder holding bio_remove_dataset.jsonl);
    stops with instructions when it is missing, never a silent fallback."""
    if path is None:
        raise GatedDataError(bio_forget_message(None))
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / BIO_FORGET_FILE
    if not candidate.is_file():
        raise GatedDataError(bio_forget_message(candidate))
    return candidate


# -- writers --------------------------------------------------------------------------------------


def write_checked(root: Path, relative: str, records: Records, fields: Sequence[str]) -> dict:
    """Check one file's records against the layout, write it atomically, describe it."""
    destination = root / relative
    layout.check_records(destination, records, tuple(fields))
    write_jsonl(destination, records)
    return {"records": len(records), "sha256": sha256_file(destination)}


def copy_checked_lines(
    root: Path, relative: str, source: Path, fields: Sequence[str]
) -> dict[str, Any]:
    """A user-supplied JSONL file's non-empty lines copied as they stand (the BLUR authors
    feed the raw line of the gated bio file), each checked to carry `fields`."""
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    layout.check_records(source, [json.loads(line) for line in lines], tuple(fields))
    destination = root / relative
    write_text(destination, "".join(line + "\n" for line in lines))
    return {"records": len(lines), "sha256": sha256_file(destination)}


def dataset_roles(benchmark: str, datasets: Mapping[str, str] | None) -> dict[str, str]:
    """Role -> hub dataset id: the defaults, overridden by the config; unknown roles are errors."""
    defaults = DEFAULT_DATASETS[benchmark]
    unknown = sorted(set(datasets or {}) - set(defaults))
    if unknown:
        raise ValueError(
            f"{benchmark}: unknown dataset role(s) {unknown}; known: {sorted(defaults)}"
        )
    return {**defaults, **(datasets or {})}


def download_benchmark(
    benchmark: str,
    out: str | os.PathLike[str],
    datasets: Mapping[str, str] | None = None,
    topics: Sequence[str] = layout.WMDP_TOPICS,
    bio_forget_file: str | os.PathLike[str] | None = None,
    source: Source | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Write one benchmark's data folder from the hub (or a mirror) in our layout.

    The gated bio file is checked before anything is fetched, so a missing file costs nothing.
    Returns the provenance written to `out/provenance.json`.
    """
    root = Path(out)
    repos = dataset_roles(benchmark, datasets)
    specs = benchmark_specs(benchmark, topics)
    has_topics = bench(benchmark).topics
    chosen = check_topics(topics) if has_topics else []
    bio_file = require_bio_forget_file(bio_forget_file) if "bio" in chosen else None
    fields = hub_layout(benchmark, topics)
    source = source or HubSource()
    files: dict[str, dict[str, Any]] = {}
    for spec in specs:
        repo = repos[spec.role]
        what = f"{benchmark} {repo} {spec.config}/{spec.split}"
        log.info("fetching %s", what)
        fetched = with_retries(
            lambda s=spec, r=repo: source.fetch(r, s.config, s.split), what, repo, "dataset", policy
        )
        records = spec.convert(fetched.records, fields[spec.path])
        described = write_checked(root, spec.path, records, fields[spec.path])
        files[spec.path] = {
            "repo_id": repo,
            "config": spec.config,
            "split": spec.split,
            **fetched.origin,
            **described,
        }
    if bio_file is not None:  # its lines kept as they stand: the authors feed the raw line
        described = copy_checked_lines(root, BIO_FORGET_PATH, bio_file, fields[BIO_FORGET_PATH])
        files[BIO_FORGET_PATH] = {
            "via": "user-supplied file (gated)",
            "file_name": bio_file.name,
            "source_sha256": sha256_file(bio_file),
            **described,
        }
    tasks = write_lm_eval_tasks(root, topics) if has_topics else {}
    provenance = {
        "source": "hub",
        "benchmark": benchmark,
        "datasets": repos,
        "files": files,
        **({"lm_eval_tasks": tasks} if tasks else {}),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"topics": chosen} if has_topics else {}),
    }
    write_json(root / PROVENANCE_FILE, provenance)
    return provenance


RETAIN_LOG_FILE = "TOFU_EVAL.json"  # open-unlearning's name for a TOFU evaluation log


def retain_log_path(oracle_repo: str) -> str:
    """Where open-unlearning/eval keeps the evaluation of a retain model: a folder named as the
    model repo (tofu_Llama-3.2-1B-Instruct_retain90/TOFU_EVAL.json; its setup_data.py and
    scripts/tofu_unlearn.sh)."""
    return f"{oracle_repo.rsplit('/', 1)[-1]}/{RETAIN_LOG_FILE}"


def retain_log_scores(log: Mapping[str, Any], where: str) -> list[float]:
    """The per-item forget truth ratios of an open-unlearning evaluation log, in item order
    (forget_truth_ratio.value_by_index.<index>.score, the values its KS test reads)."""
    try:
        by_index = log["forget_truth_ratio"]["value_by_index"]
        return [float(by_index[k]["score"]) for k in sorted(by_index, key=int)]
    except (KeyError, TypeError, ValueError) as error:
        raise DownloadError(
            f"{where} is not an open-unlearning TOFU evaluation log: it needs "
            "forget_truth_ratio.value_by_index.<index>.score for every forget item "
            f"({type(error).__name__}: {error}). Point hub.tofu.datasets.retain_logs at "
            "open-unlearning/eval (or a mirror of it), or set tofu.forget_quality_reference: "
            "oracle to compare with this pipeline's own evaluation of the retain model."
        ) from None


def download_retain_log(
    repo_id: str,
    path_in_repo: str,
    out: str | os.PathLike[str],
    client: HubClient | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """One retain model's evaluation log from a dataset repo, checked to hold the per-item
    truth ratios, written atomically with where it came from (key `provenance`)."""
    client = client or HfHubClient()
    sha, files = with_retries(
        lambda: client.repo_files(repo_id, "dataset", None), repo_id, repo_id, "dataset", policy
    )
    if path_in_repo not in files:
        raise DownloadError(
            f"{repo_id} has no {path_in_repo}: the retain model's evaluation log is named after "
            "its model repo; check hub.tofu.models (the retain models) and "
            "hub.tofu.datasets.retain_logs"
        )
    with atomic_path(out) as tmp:
        folder = tmp.with_name(tmp.name + ".repo")
        with_retries(
            lambda: client.snapshot(repo_id, "dataset", sha, [path_in_repo], folder),
            f"{repo_id} {path_in_repo}",
            repo_id,
            "dataset",
            policy,
        )
        fetched = folder / path_in_repo
        log_record = json.loads(fetched.read_text(encoding="utf-8"))
        scores = retain_log_scores(log_record, f"{repo_id}/{path_in_repo}")
        provenance = {
            "repo_id": repo_id,
            "commit": sha,
            "path": path_in_repo,
            "sha256": sha256_file(fetched),
            "items": len(scores),
        }
        write_json(tmp, {**log_record, "provenance": provenance})
    return provenance


def _top_level(files: Iterable[str], patterns: Iterable[str]) -> list[str]:
    patterns = list(patterns)
    return sorted(f for f in files if "/" not in f and any(fnmatch(f, p) for p in patterns))


def model_files(files: Sequence[str], with_tokenizer: bool = True) -> tuple[list[str], str]:
    """Files of a model repo that make an HF folder: config, weights (safetensors preferred,
    pytorch .bin only when a repo has no safetensors) and, optionally, the tokenizer."""
    found = {
        name: _top_level(files, patterns)
        for name, patterns in WEIGHT_PATTERNS.items()
        if any(not f.endswith(".json") for f in _top_level(files, patterns))
    }
    if not found:
        raise DownloadError("no model weights (*.safetensors or pytorch_model*.bin) in the repo")
    weights_format = next(iter(found))  # dicts keep order: safetensors first
    wanted = found[weights_format] + _top_level(files, CONFIG_PATTERNS)
    if with_tokenizer:
        wanted += _top_level(files, TOKENIZER_PATTERNS)
    return sorted(set(wanted)), weights_format


def check_model_folder(folder: Path, repo_id: str) -> None:
    """A downloaded folder must load with from_pretrained: config, weights and a tokenizer."""
    names = {p.name for p in folder.iterdir()}
    if "config.json" not in names:
        raise DownloadError(f"{repo_id} has no config.json: not a transformers model repo")
    if "tokenizer_config.json" not in names and "tokenizer.json" not in names:
        raise DownloadError(
            f"{repo_id} ships no tokenizer files. Name the repo of its tokenizer as `tokenizer:` "
            "of this model in the config's `hub` section (e.g. the base model it was fine-tuned "
            "from), or pass --tokenizer to `download --what model`."
        )


def download_model(
    repo_id: str,
    out: str | os.PathLike[str],
    revision: str | None = None,
    tokenizer_repo: str | None = None,
    client: HubClient | None = None,
    policy: RetryPolicy | None = None,
) -> dict[str, Any]:
    """Download a model repo into an HF model folder (weights, config, tokenizer), atomically,
    with provenance.json: repo, requested revision, resolved commit, file checksums.

    The revision is resolved to a commit first and that commit is downloaded, so the files and
    the recorded sha always agree. A `tokenizer_repo` supplies the tokenizer files instead of
    the model repo's own (MUSE's targets are used with the Llama-2 tokenizer).
    """
    client = client or HfHubClient()

    def resolve(repo: str, rev: str | None) -> tuple[str, list]:
        return with_retries(
            lambda: client.repo_files(repo, "model", rev), f"model {repo}", repo, "model", policy
        )

    sha, files = resolve(repo_id, revision)
    wanted, weights_format = model_files(files, with_tokenizer=tokenizer_repo is None)
    if weights_format != "safetensors":
        log.warning("%s has no safetensors weights: downloading pytorch .bin files", repo_id)
    tokenizer: dict[str, Any] | None = None
    if tokenizer_repo is not None:
        tokenizer_sha, tokenizer_files = resolve(tokenizer_repo, None)
        tokenizer_wanted = _top_level(tokenizer_files, TOKENIZER_PATTERNS)
        if not tokenizer_wanted:
            raise DownloadError(f"the tokenizer repo {tokenizer_repo} has no tokenizer files")
        tokenizer = {"repo_id": tokenizer_repo, "commit": tokenizer_sha, "files": tokenizer_wanted}
    with atomic_path(out) as tmp:
        with_retries(
            lambda: client.snapshot(repo_id, "model", sha, wanted, tmp),
            f"model {repo_id}",
            repo_id,
            "model",
            policy,
        )
        if tokenizer is not None:
            with_retries(
                lambda: client.snapshot(
                    tokenizer_repo, "model", tokenizer_sha, tokenizer_wanted, tmp
                ),
                f"tokenizer {tokenizer_repo}",
                tokenizer_repo,
                "model",
                policy,
            )
        shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download metadata
        check_model_folder(tmp, repo_id)
        record_checksums(weight_files(tmp))  # hashed once here, read by every job after
        provenance = {
            "source": "hub",
            "repo_id": repo_id,
            "revision_requested": revision,
            "commit": sha,
            "weights_format": weights_format,
            "tokenizer": tokenizer,
            "files": sha256_tree(tmp),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(tmp / PROVENANCE_FILE, provenance)
    return provenance
