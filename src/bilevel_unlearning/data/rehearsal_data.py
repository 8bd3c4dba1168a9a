"""Hub-shaped dataset repos for the paper rehearsal: the real repo ids, configs, splits and
field names, filled with the miniature's generated content.

The download stage reads them through a hub mirror (`hub.mirror`, data/hub_client.py's
FolderHubClient) exactly as it reads the hub's parquet conversion, so the rehearsal exercises
the converters (TOFU's multiple-choice shape, wikitext's empty lines) and the layout checks that
a real download runs. What the hub has and nothing reads is left out, as the download fetches
only what the layout names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bilevel_unlearning.data import layout, miniature
from bilevel_unlearning.data.hub import (
    BIO_FORGET_PATH,
    benchmark_specs,
    dataset_roles,
    retain_log_path,
)
from bilevel_unlearning.io import atomic_path, write_json, write_jsonl

Records = list[dict[str, Any]]
OPTION_COUNT = 4  # TOFU's real_authors / world_facts questions: option1..option4


def multiple_choice(records: Sequence[Mapping[str, Any]]) -> Records:
    """TOFU's real-authors and world-facts shape on the hub: the answer among option1..4
    (hub_sources.perturbed_answers turns it back into the wrong answers)."""
    out = []
    for index, record in enumerate(records):
        wrong = list(record["perturbed_answer"])[: OPTION_COUNT - 1]
        options = wrong[:]
        options.insert(index % (len(wrong) + 1), record["answer"])
        out.append(
            {
                "question": record["question"],
                "answer": record["answer"],
                **{f"option{i + 1}": o for i, o in enumerate(options)},
            }
        )
    return out


def with_blank_lines(records: Sequence[Mapping[str, Any]]) -> Records:
    """wikitext's test split: one row per line, empty lines between paragraphs."""
    out: Records = []
    for record in records:
        out += [{"text": ""}, {"text": f" {record['text']} \n"}]
    return out


# layout file -> how its records look on the hub, where that differs from the layout
HUB_SHAPES = {
    "real_authors_perturbed.jsonl": multiple_choice,
    "world_facts_perturbed.jsonl": multiple_choice,
    "wikitext/wikitext-2-raw-v1-test.jsonl": with_blank_lines,
}


def write_parquet(path: Path, records: Records) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(records), tmp)


def benchmark_repos(
    benchmark: str,
    splits: Mapping[str, Records],
    datasets: Mapping[str, str] | None,
    topics: Sequence[str],
) -> dict[tuple[str, str, str], Records]:
    """(repo id, config, split) -> hub-shaped records, for every split the download fetches."""
    repos = dataset_roles(benchmark, datasets)
    out = {}
    for spec in benchmark_specs(benchmark, topics):
        shape = HUB_SHAPES.get(spec.path, list)
        out[(repos[spec.role], spec.config, spec.split)] = shape(splits[spec.path])
    return out


def write_dataset_repos(
    mirror: Path,
    benchmarks: Sequence[str],
    hub: Mapping[str, Any],
    topics: Sequence[str],
    seed: int,
    sizes: Mapping[str, Any],
) -> list[str]:
    """Write every dataset repo the benchmarks' downloads read, as parquet under
    `{mirror}/{repo}/{config}/{split}/0000.parquet`; returns the repo ids."""
    written = set()
    for benchmark in benchmarks:
        splits = miniature.build(benchmark, seed, sizes)
        datasets = hub.get(benchmark, {}).get("datasets")
        for (repo, config, split), records in benchmark_repos(
            benchmark, splits, datasets, topics
        ).items():
            write_parquet(mirror / repo / config / split / "0000.parquet", records)
            written.add(repo)
        if benchmark == "tofu" and hub.get("tofu", {}).get("models"):
            written.update(write_retain_logs(mirror, hub, splits, seed))
    return sorted(written)


def write_retain_logs(
    mirror: Path, hub: Mapping[str, Any], splits: Mapping[str, Records], seed: int
) -> list[str]:
    """open-unlearning/eval as it is shaped: per TOFU retain model repo, its TOFU_EVAL.json
    with forget_truth_ratio.value_by_index.<item>.score for every item of the forget split
    (seeded values in (0, 1): the rehearsal checks the path, not the numbers)."""
    import random

    repo = dataset_roles("tofu", hub["tofu"].get("datasets"))["retain_logs"]
    for split, retain in layout.TOFU_RETAIN_OF.items():
        oracle = hub["tofu"]["models"].get(retain, {}).get("repo")
        if not oracle:
            continue
        draw = random.Random(f"{seed}-{split}")
        items = splits[f"{split}_perturbed.jsonl"]
        scores = {str(i): {"score": draw.uniform(0.05, 0.95)} for i in range(len(items))}
        mean = sum(v["score"] for v in scores.values()) / len(scores)
        log = {"forget_truth_ratio": {"agg_value": mean, "value_by_index": scores}}
        write_json(mirror / repo / retain_log_path(oracle), log)
    return [repo]


def write_bio_forget_file(path: Path, seed: int, sizes: Mapping[str, Any]) -> None:
    """The gated WMDP bio corpus as the access form delivers it: JSON lines with title,
    abstract, text and doi (only the first three are read)."""
    records = miniature.build("wmdp", seed, sizes)[BIO_FORGET_PATH]
    fields = layout.WMDP_LAYOUT[BIO_FORGET_PATH]
    write_jsonl(
        path,
        [
            {**{f: r[f] for f in fields}, "doi": f"10.0000/rehearsal.{i}"}
            for i, r in enumerate(records)
        ],
    )
