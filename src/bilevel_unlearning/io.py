"""Atomic file output and checksums.

Every output is written to a temporary name beside its destination and renamed when complete,
so an interrupted job never leaves a half file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside the destination; rename it over the destination on success.

    Works for files and folders alike (a folder destination is replaced whole).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    tmp = tmp_dir / destination.name
    try:
        yield tmp
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write one JSON document atomically, sorted and indented so diffs stay readable."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line atomically (the on-disk form of every benchmark split)."""
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    write_text(path, "".join(line + "\n" for line in lines))


DATA_STAGE = "the data stage (snakemake --cores 2 data, or the download rules with source: hub)"


class UnreadableFileError(ValueError):
    """A file exists but does not parse: names the file, the place and what makes it."""


def _unreadable(path: Path, error: json.JSONDecodeError, made_by: str, line: int = 0) -> Exception:
    where = f"line {line or error.lineno}, column {error.colno}"
    return UnreadableFileError(
        f"{path} is not valid JSON at {where} ({error.msg}): the file is truncated or damaged. "
        f"Delete it and rerun {made_by}, which writes it."
    )


def read_jsonl(path: str | os.PathLike[str], made_by: str = DATA_STAGE) -> list[dict[str, Any]]:
    """Read a JSONL split; a missing or damaged file names itself and what makes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: it is written by {made_by}.")
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise _unreadable(path, error, made_by, number) from None
    return records


def read_json(path: str | os.PathLike[str], made_by: str = "the rule that writes it") -> Any:
    """Read one JSON document; a missing or damaged file names itself and what makes it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: it is written by {made_by}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise _unreadable(path, error, made_by) from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(path: str | os.PathLike[str]) -> list[Path]:
    """A model folder's weight files (one, or the shards of a large model), for checksums:
    safetensors, else the pytorch .bin files of an older repo (transformers loads either)."""
    folder = Path(path)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(
            f"{path} holds no weights (*.safetensors or pytorch_model*.bin): the folder is "
            "incomplete or was not written by this pipeline; delete it and rerun the rule that "
            "makes it"
        )
    return files


# Beside a model folder's weights: each file's SHA-256 with the size and modification time it
# was hashed at, so the 13.5 GB of a 7B model are hashed once when written, not by every
# evaluation and every process of every run that reads them.
CHECKSUMS_FILE = "checksums.sha256.json"


def _stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def record_checksums(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Hash files once and record the digests in their folder's CHECKSUMS_FILE (one folder)."""
    files = [Path(p) for p in paths]
    folders = {f.parent for f in files}
    if len(folders) != 1:
        raise ValueError(f"record_checksums takes the files of one folder, got {sorted(folders)}")
    entries = {f.name: {"sha256": sha256_file(f), **_stamp(f)} for f in files}
    (files[0].parent / CHECKSUMS_FILE).write_text(json.dumps(entries, indent=2, sort_keys=True))


def recorded_sha256(path: str | os.PathLike[str]) -> str:
    """A file's SHA-256: the one recorded beside it when the file still has the size and
    modification time it was hashed at (so an edited or replaced file is hashed again, never
    reported stale), else computed now."""
    path = Path(path)
    record = path.parent / CHECKSUMS_FILE
    if record.is_file():
        try:
            entry = json.loads(record.read_text(encoding="utf-8")).get(path.name)
        except json.JSONDecodeError:
            entry = None
        if entry and {k: entry.get(k) for k in ("bytes", "mtime_ns")} == _stamp(path):
            return entry["sha256"]
    return sha256_file(path)


def sha256_tree(root: str | os.PathLike[str]) -> dict[str, str]:
    """SHA-256 of every file under a folder, keyed by relative path (sorted, so stable)."""
    root = Path(root)
    return {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def read_yaml(path: str | os.PathLike[str]) -> Any:
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)
