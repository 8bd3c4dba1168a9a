"""Where hub-shaped records come from, and the converters that turn them into the records of one
file of ``layout.py``.

``HubSource`` reads the hub's parquet conversion (branch ``refs/convert/parquet``: one uniform
``{config}/{split}/*.parquet`` layout for every dataset, whatever format its main branch uses)
and falls back to ``datasets.load_dataset`` when a split has no conversion; ``MirrorSource``
reads a local folder laid out like that branch (an offline mirror, and the tests). Converters
are pure functions from hub-shaped records (dicts with the hub's field names).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bilevel_unlearning.data.hub_client import HfHubClient, HubClient, Records, classify
from bilevel_unlearning.io import sha256_file

log = logging.getLogger(__name__)

PARQUET_BRANCH = "refs/convert/parquet"


# -- sources of hub-shaped records --------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """Records of one config/split and where they came from (for provenance)."""

    records: Records
    origin: dict[str, Any]


class Source(Protocol):
    def fetch(self, repo_id: str, config: str, split: str) -> Fetched: ...


def read_records(files: Iterable[Path]) -> Records:
    """Records of parquet, JSON-lines or JSON-array files, in file order."""
    records: Records = []
    for path in files:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            records += pq.read_table(path).to_pylist()
        else:
            text = path.read_text(encoding="utf-8")
            if text.lstrip().startswith("["):
                records += json.loads(text)
            else:
                records += [json.loads(line) for line in text.splitlines() if line.strip()]
    return records


SPLIT_SUFFIXES = (".parquet", ".jsonl", ".json")


def split_files(folder: Path) -> list[Path]:
    """The data files of a `{config}/{split}` folder, sorted (shards 0000, 0001, ...)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SPLIT_SUFFIXES and p.is_file())


@dataclass(frozen=True)
class MirrorSource:
    """Local files laid out like the parquet branch: `{root}/{repo_id}/{config}/{split}/*`."""

    root: Path

    def fetch(self, repo_id: str, config: str, split: str) -> Fetched:
        folder = Path(self.root) / repo_id / config / split
        files = split_files(folder)
        if not files:
            raise FileNotFoundError(
                f"no .parquet/.jsonl/.json files in {folder} (mirror of {repo_id} {config}/{split})"
            )
        origin = {"via": "mirror", "files": {p.name: sha256_file(p) for p in files}}
        return Fetched(read_records(files), origin)


@dataclass
class HubSource:
    """The hub's parquet conversion of a split, else `datasets.load_dataset` on the main branch."""

    client: HubClient = field(default_factory=HfHubClient)

    def _parquet_sha(self, repo_id: str) -> str | None:
        try:
            sha, _ = self.client.repo_files(repo_id, "dataset", PARQUET_BRANCH)
        except Exception as exc:
            if classify(exc) != "missing":
                raise
            return None  # no conversion branch (or no such repo: load_dataset will say)
        return sha

    def fetch(self, repo_id: str, config: str, split: str) -> Fetched:
        sha = self._parquet_sha(repo_id)
        if sha is not None:
            pattern = f"{config}/{split}/*.parquet"
            folder = self.client.snapshot(repo_id, "dataset", sha, [pattern], None)
            files = split_files(folder / config / split)
            if files:
                origin = {"via": "parquet-conversion", "branch": PARQUET_BRANCH, "revision": sha}
                return Fetched(read_records(files), origin)
        log.info(
            "%s %s/%s has no parquet conversion: loading it with datasets", repo_id, config, split
        )
        records, main_sha = self.client.load_dataset(repo_id, config, split)
        return Fetched(records, {"via": "datasets.load_dataset", "revision": main_sha})


# -- converters: hub-shaped records -> layout records -------------------------------------------


def select_fields(records: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> Records:
    """Keep the layout's fields (absent ones stay absent, so check_records names them)."""
    return [{f: r[f] for f in fields if f in r} for r in records]


def nonempty_text(records: Iterable[Mapping[str, Any]]) -> Records:
    """wikitext: one record per line of the test split; RMU trains on the non-empty lines."""
    return [{"text": r["text"]} for r in records if str(r.get("text", "")).strip()]


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def perturbed_answers(record: Mapping[str, Any]) -> list[str] | None:
    """TOFU's wrong answers as a list: `perturbed_answer`, else the options that are not the
    answer (a multiple-choice shape `option1..optionN` of real authors / world facts)."""
    if "perturbed_answer" in record:
        return [str(a) for a in _as_list(record["perturbed_answer"])]
    options = [record[k] for k in sorted(record) if re.fullmatch(r"option\d+", k)]
    if not options:
        return None
    return [str(o) for o in options if o != record.get("answer")]


def tofu_records(records: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> Records:
    """TOFU records with `perturbed_answer` always a list when the layout asks for it."""
    out = []
    for record in records:
        row = {f: record[f] for f in fields if f in record and f != "perturbed_answer"}
        if "perturbed_answer" in fields and (wrong := perturbed_answers(record)) is not None:
            row["perturbed_answer"] = wrong
        out.append(row)
    return out
