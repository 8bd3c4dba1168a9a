"""Atomic output, checksums and JSONL reading."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bilevel_unlearning import io
from bilevel_unlearning.io import (
    UnreadableFileError,
    atomic_path,
    read_json,
    read_jsonl,
    sha256_file,
    sha256_tree,
    write_json,
    write_jsonl,
    write_text,
)


class Interrupted(Exception):
    pass


def test_failed_body_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    destination = tmp_path / "out" / "model.bin"
    with pytest.raises(Interrupted), atomic_path(destination) as tmp:
        assert tmp.parent.parent == destination.parent and tmp.name == destination.name
        tmp.write_bytes(b"half written")
        raise Interrupted
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []


def test_failed_body_keeps_the_previous_output(tmp_path: Path) -> None:
    destination = tmp_path / "scores.json"
    destination.write_text("old")
    with pytest.raises(Interrupted), atomic_path(destination) as tmp:
        tmp.write_text("new but incomplete")
        raise Interrupted
    assert destination.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]


def test_failed_folder_body_leaves_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "model"
    with pytest.raises(Interrupted), atomic_path(destination) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
        raise Interrupted
    assert list(tmp_path.iterdir()) == []


def test_success_writes_file_and_cleans_up(tmp_path: Path) -> None:
    destination = tmp_path / "a.txt"
    with atomic_path(destination) as tmp:
        tmp.write_text("done")
        assert not destination.exists()  # nothing visible until the body finishes
    assert destination.read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_folder_destination_is_replaced_whole(tmp_path: Path) -> None:
    destination = tmp_path / "model"
    destination.mkdir()
    (destination / "old_weights.bin").write_bytes(b"old")
    (destination / "sub").mkdir()
    (destination / "sub" / "stale.txt").write_text("stale")
    with atomic_path(destination) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text('{"new": true}')
    assert sorted(p.name for p in destination.iterdir()) == ["config.json"]
    assert (destination / "config.json").read_text() == '{"new": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_sha256_file_known_values(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
    big = os.urandom(3 * (1 << 20) + 17)  # several read blocks and a partial one
    (tmp_path / "big").write_bytes(big)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(big).hexdigest()


def test_sha256_tree_is_relative_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jsonl").write_bytes(b"1")
    (tmp_path / "a.txt").write_bytes(b"2")
    (tmp_path / ".lock").write_bytes(b"3")
    tree = sha256_tree(tmp_path)
    assert list(tree) == ["a.txt", str(Path("b") / "x.jsonl")]
    assert tree["a.txt"] == hashlib.sha256(b"2").hexdigest()


def test_read_jsonl_missing_names_the_data_stage(tmp_path: Path) -> None:
    missing = tmp_path / "muse_news" / "data" / "raw" / "forget.jsonl"
    with pytest.raises(FileNotFoundError, match="data stage") as caught:
        read_jsonl(missing)
    assert str(missing) in str(caught.value)


def test_jsonl_and_json_round_trip(tmp_path: Path) -> None:
    records = [{"text": "café — 東京\nline two", "n": 1}, {"choices": ["a", "b"], "answer": 0}]
    write_jsonl(tmp_path / "split.jsonl", records)
    assert read_jsonl(tmp_path / "split.jsonl") == records
    lines = (tmp_path / "split.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and "café" in lines[0]  # one record a line, not ASCII-escaped
    write_text(tmp_path / "blank.jsonl", '{"a": 1}\n\n  \n{"a": 2}\n')
    assert read_jsonl(tmp_path / "blank.jsonl") == [{"a": 1}, {"a": 2}]
    write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert read_json(tmp_path / "x.json") == {"a": [1, 2], "b": 1}
    assert (tmp_path / "x.json").read_text().index('"a"') < (tmp_path / "x.json").read_text().index(
        '"b"'
    )


def test_a_truncated_jsonl_names_the_file_the_line_and_what_makes_it(tmp_path: Path) -> None:
    """A job killed while copying leaves a cut last line: JSONDecodeError said neither."""
    split = tmp_path / "raw" / "forget.jsonl"
    write_text(split, '{"text": "one"}\n{"text": "two"}\n{"text": "thr')
    with pytest.raises(UnreadableFileError) as caught:
        read_jsonl(split, made_by="rule generate_muse_news")
    message = str(caught.value)
    assert str(split) in message and "line 3, column" in message
    assert "rerun rule generate_muse_news" in message


def test_a_garbage_json_names_the_file(tmp_path: Path) -> None:
    result = tmp_path / "eval" / "blur_npo" / "epoch_1.json"
    write_text(result, "not json at all")
    with pytest.raises(UnreadableFileError, match="line 1, column 1") as caught:
        read_json(result, made_by="its evaluate_<benchmark> rule")
    assert str(result) in str(caught.value) and "evaluate_<benchmark>" in str(caught.value)
    with pytest.raises(FileNotFoundError, match=r"epoch_2\.json does not exist"):
        read_json(result.with_name("epoch_2.json"))


def test_a_tokenizer_folder_without_its_vocabulary_says_which_file_is_missing(
    tmp_path: Path,
) -> None:
    from bilevel_unlearning.models.hf import load_tokenizer

    folder = tmp_path / "tokenizer"
    write_text(folder / "tokenizer_config.json", "{}")
    with pytest.raises(FileNotFoundError, match=r"no vocabulary file \(tokenizer\.json"):
        load_tokenizer(folder)


def test_recorded_checksums_are_reused_while_the_files_are_unchanged_and_never_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model's weights are hashed once when written; a file edited or replaced after that
    is hashed again, never reported with its old digest."""
    shards = [tmp_path / f"model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    for i, shard in enumerate(shards):
        shard.write_bytes(bytes([i]) * 1000)
    io.record_checksums(shards)
    hashed: list[str] = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    assert io.recorded_sha256(shards[0]) == hashlib.sha256(b"\0" * 1000).hexdigest()
    assert hashed == []  # read from the record
    shards[1].write_bytes(bytes([7]) * 1000)  # same size, other bytes
    os.utime(shards[1], ns=(1, 1))  # a replaced file: another modification time
    assert io.recorded_sha256(shards[1]) == hashlib.sha256(bytes([7]) * 1000).hexdigest()
    assert hashed == [shards[1].name]
    with pytest.raises(ValueError, match="one folder"):
        io.record_checksums([shards[0], tmp_path / "elsewhere" / "x.bin"])


def test_weight_files_take_bin_weights_where_a_folder_has_no_safetensors(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model-00001-of-00002.bin").write_bytes(b"w")
    (tmp_path / "pytorch_model-00002-of-00002.bin").write_bytes(b"w")
    assert [p.name for p in io.weight_files(tmp_path)] == [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
    ]
    (tmp_path / "model.safetensors").write_bytes(b"w")
    assert [p.name for p in io.weight_files(tmp_path)] == ["model.safetensors"]
    with pytest.raises(FileNotFoundError, match="no weights"):
        io.weight_files(tmp_path / "empty")
