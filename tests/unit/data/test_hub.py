"""Download stage without a network: local files shaped like the hub's datasets (parquet branch
layout, the hub's field names) go through the same conversion as a real download; a fake hub
client and patched huggingface_hub calls exercise retries, refusals and token hygiene."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from bilevel_unlearning.cli import main
from bilevel_unlearning.data import hub, hub_client, hub_sources, layout
from bilevel_unlearning.io import CHECKSUMS_FILE, read_json, read_jsonl, sha256_file

SECRET = "hf_TESTtokenDoNotLeak0123456789"
NO_WAIT = hub_client.RetryPolicy(attempts=4, base_delay=1.0, sleep=lambda s: None)


# -- hub-shaped local files ------------------------------------------------------------------


def write_split(root: Path, repo: str, config: str, split: str, records: list[dict]) -> None:
    """One split as the parquet branch holds it: {repo}/{config}/{split}/0000.parquet."""
    folder = root / repo / config / split
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), folder / "0000.parquet")


def write_jsonl_split(root: Path, repo: str, config: str, split: str, records: list[dict]) -> None:
    folder = root / repo / config / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def muse_mirror(root: Path, repo: str = "muse-bench/MUSE-News") -> None:
    """A few records per MUSE split, with the hub's field names (and an extra hub field)."""
    for config in ("raw", "privleak"):
        splits = ("forget", "retain1", "retain2", "holdout")
        for split in splits if config == "raw" else ("forget", "retain", "holdout"):
            records = [{"text": f"{config} {split} document {i}."} for i in range(3)]
            write_split(root, repo, config, split, records)
    write_split(
        root, repo, "verbmem", "forget", [{"prompt": "The mayor said", "gt": " that it rained."}]
    )
    for split in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"):
        qa = [{"question": f"Who {split} {i}?", "answer": f"A{i}", "id": i} for i in range(2)]
        write_split(root, repo, "knowmem", split, qa)


def perturbed(i: int) -> dict[str, Any]:
    return {
        "question": f"What did author {i} write?",
        "answer": f"Author {i} wrote Book {i}.",
        "paraphrased_question": f"Which book is by author {i}?",
        "paraphrased_answer": f"Book {i} is by author {i}.",
        "perturbed_answer": [f"Book {i + 10} is by author {i}.", f"Book {i + 20} is by {i}."],
    }


def tofu_mirror(root: Path, repo: str = "locuslab/TOFU") -> None:
    """TOFU's configs (split train) as JSON lines, the format of its main branch."""
    for name in ("full", "forget01", "forget05", "forget10", "retain99", "retain95", "retain90"):
        write_jsonl_split(root, repo, name, "train", [perturbed(i) for i in range(3)])
    for name in ("forget01", "forget05", "forget10"):
        write_jsonl_split(
            root, repo, f"{name}_perturbed", "train", [perturbed(i) for i in range(2)]
        )
    write_jsonl_split(root, repo, "retain_perturbed", "train", [perturbed(7)])
    real_authors = {  # the multiple-choice shape: options, no perturbed_answer
        "question": "Who wrote 'Romeo and Juliet'?",
        "option1": "Charles Dickens",
        "option2": "William Shakespeare",
        "option3": "Mark Twain",
        "option4": "Jane Austen",
        "answer": "William Shakespeare",
    }
    write_jsonl_split(root, repo, "real_authors_perturbed", "train", [real_authors])
    world_fact = {"question": "Capital of Spain?", "answer": "Madrid", "perturbed_answer": ["Rome"]}
    write_jsonl_split(root, repo, "world_facts_perturbed", "train", [world_fact])


def mcq(topic: str, i: int) -> dict[str, Any]:
    return {"question": f"{topic} question {i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4}


def wmdp_mirror(root: Path) -> None:
    for topic in ("bio", "cyber"):
        write_split(root, "cais/wmdp", f"wmdp-{topic}", "test", [mcq(topic, i) for i in range(3)])
        retain = [{"text": f"{topic} retain paper {i}"} for i in range(2)]
        write_split(root, "cais/wmdp-corpora", f"{topic}-retain-corpus", "train", retain)
    forget = [{"text": f"cyber forget page {i}"} for i in range(2)]
    write_split(root, "cais/wmdp-corpora", "cyber-forget-corpus", "train", forget)
    mmlu = [{**mcq("mmlu", i), "subject": "astronomy"} for i in range(2)]
    write_split(root, "cais/mmlu", "all", "test", mmlu)
    lines = [" = Robert Boulter = \n", "", " \n", " Robert Boulter is an actor . \n"]
    write_split(
        root, "Salesforce/wikitext", "wikitext-2-raw-v1", "test", [{"text": t} for t in lines]
    )


def bio_file(folder: Path) -> Path:
    path = folder / hub.BIO_FORGET_FILE
    folder.mkdir(parents=True, exist_ok=True)
    record = {"title": "T", "abstract": "A.", "text": "T\nA. Body.", "doi": "10.0/x"}
    path.write_text(json.dumps(record) + "\n")
    return path


def assert_layout(out: Path, files: dict[str, tuple[str, ...]]) -> None:
    """Every expected file exists, and its records carry exactly the fields the hub download
    requires (those something reads); the gated bio file is copied line by line as it stands
    (the authors feed its raw lines), so it carries them and whatever else it has."""
    for relative, fields in files.items():
        records = read_jsonl(out / relative)
        assert records, relative
        if relative == hub.BIO_FORGET_PATH:
            assert all(set(fields) <= set(r) for r in records), relative
        else:
            assert all(set(r) == set(fields) for r in records), relative


# -- conversion of each benchmark --------------------------------------------------------------


def test_muse_mirror_converts_to_the_layout(tmp_path: Path) -> None:
    muse_mirror(tmp_path / "mirror")
    out = tmp_path / "data"
    source = hub_sources.MirrorSource(tmp_path / "mirror")
    provenance = hub.download_benchmark("muse_news", out, source=source)
    assert_layout(out, hub.hub_layout("muse_news"))
    assert read_jsonl(out / "knowmem/forget_qa.jsonl")[1] == {
        "question": "Who forget_qa 1?",
        "answer": "A1",
    }
    assert read_jsonl(out / "verbmem/forget.jsonl") == [
        {"prompt": "The mayor said", "gt": " that it rained."}
    ]
    entry = provenance["files"]["raw/forget.jsonl"]
    assert (entry["repo_id"], entry["config"], entry["split"]) == (
        "muse-bench/MUSE-News",
        "raw",
        "forget",
    )
    assert entry["sha256"] == sha256_file(out / "raw/forget.jsonl")
    assert read_json(out / hub.PROVENANCE_FILE) == provenance
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json*")) == sorted(
        hub.hub_data_files("muse_news")
    )


def test_tofu_mirror_converts_perturbed_answers_to_lists(tmp_path: Path) -> None:
    tofu_mirror(tmp_path / "mirror")
    out = tmp_path / "data"
    hub.download_benchmark("tofu", out, source=hub_sources.MirrorSource(tmp_path / "mirror"))
    assert_layout(out, hub.hub_layout("tofu"))
    assert read_jsonl(out / "forget10.jsonl")[0] == {
        "question": "What did author 0 write?",
        "answer": "Author 0 wrote Book 0.",
    }
    # only the fields something reads are kept (the hub's paraphrased_question is not)
    unread = {"paraphrased_question"}
    assert read_jsonl(out / "forget05_perturbed.jsonl")[1] == {
        k: v for k, v in perturbed(1).items() if k not in unread
    }
    assert read_jsonl(out / "real_authors_perturbed.jsonl") == [
        {
            "question": "Who wrote 'Romeo and Juliet'?",
            "answer": "William Shakespeare",
            "perturbed_answer": ["Charles Dickens", "Mark Twain", "Jane Austen"],
        }
    ]
    assert read_jsonl(out / "world_facts_perturbed.jsonl")[0]["perturbed_answer"] == ["Rome"]


def test_perturbed_answer_string_becomes_a_list() -> None:
    record = {"question": "q", "answer": "a", "perturbed_answer": "b"}
    fields = ("question", "answer", "perturbed_answer")
    assert hub_sources.tofu_records([record], fields) == [{**record, "perturbed_answer": ["b"]}]


def test_wmdp_with_both_topics_uses_the_user_file(tmp_path: Path) -> None:
    wmdp_mirror(tmp_path / "mirror")
    out = tmp_path / "data"
    bio = bio_file(tmp_path / "gated")
    provenance = hub.download_benchmark(
        "wmdp", out, bio_forget_file=bio, source=hub_sources.MirrorSource(tmp_path / "mirror")
    )
    assert_layout(out, hub.hub_layout("wmdp"))
    # the user's lines as they stand (the authors feed the raw line), blank lines dropped
    kept = [line for line in bio.read_text().splitlines() if line.strip()]
    assert (out / "corpora/bio-forget-corpus.jsonl").read_text() == "".join(
        line + "\n" for line in kept
    )
    assert read_jsonl(out / "corpora/bio-forget-corpus.jsonl")[0]["text"] == "T\nA. Body."
    wikitext = [r["text"] for r in read_jsonl(out / "wikitext/wikitext-2-raw-v1-test.jsonl")]
    assert wikitext == [" = Robert Boulter = \n", " Robert Boulter is an actor . \n"]
    assert read_jsonl(out / "questions/mmlu.jsonl")[0] == {**mcq("mmlu", 0), "subject": "astronomy"}
    assert read_jsonl(out / "questions/wmdp-bio.jsonl")[2] == mcq("bio", 2)
    assert provenance["topics"] == ["bio", "cyber"]
    bio_entry = provenance["files"][hub.BIO_FORGET_PATH]
    assert bio_entry["source_sha256"] == sha256_file(bio)


def test_wmdp_without_bio_writes_only_the_cyber_files(tmp_path: Path) -> None:
    wmdp_mirror(tmp_path / "mirror")
    out = tmp_path / "data"
    source = hub_sources.MirrorSource(tmp_path / "mirror")
    provenance = hub.download_benchmark("wmdp", out, topics=["cyber"], source=source)
    expected = hub.hub_layout("wmdp", ["cyber"])
    assert not any("bio" in path for path in expected)
    unread = hub.topic_files("bio") | hub.UNREAD_WMDP_FILES  # the retain corpora: never read
    assert set(expected) == set(layout.WMDP_LAYOUT) - unread
    assert_layout(out, expected)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == hub.hub_data_files("wmdp", ["cyber"])
    assert [p for p in written if p.startswith("tasks/")] == [
        "tasks/mmlu.yaml",
        "tasks/wmdp_cyber.yaml",
    ]
    assert provenance["topics"] == ["cyber"]


def test_a_missing_hub_field_is_named(tmp_path: Path) -> None:
    muse_mirror(tmp_path / "mirror")
    write_split(tmp_path / "mirror", "muse-bench/MUSE-News", "verbmem", "forget", [{"prompt": "p"}])
    with pytest.raises(
        ValueError, match=r"verbmem/forget.jsonl record 0 lacks field\(s\) \['gt'\]"
    ):
        hub.download_benchmark(
            "muse_news", tmp_path / "data", source=hub_sources.MirrorSource(tmp_path / "mirror")
        )


def test_unknown_dataset_role_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset role"):
        hub.download_benchmark("tofu", tmp_path, datasets={"tofuu": "x/y"})


# -- the gated bio corpus ------------------------------------------------------------------------


class CountingSource:
    """Counts fetches and delegates (or fails when no inner source is given)."""

    def __init__(self, inner: hub_sources.Source | None = None) -> None:
        self.inner, self.calls = inner, 0

    def fetch(self, repo_id: str, config: str, split: str) -> hub_sources.Fetched:
        self.calls += 1
        assert self.inner is not None
        return self.inner.fetch(repo_id, config, split)


def test_missing_bio_file_stops_before_any_download_and_says_what_to_do(tmp_path: Path) -> None:
    expected = tmp_path / "gated" / hub.BIO_FORGET_FILE
    source = CountingSource()
    with pytest.raises(hub_client.GatedDataError) as caught:
        hub.download_benchmark("wmdp", tmp_path / "data", bio_forget_file=expected, source=source)
    message = str(caught.value)
    assert source.calls == 0 and not (tmp_path / "data").exists()
    assert "bio_remove_dataset.jsonl" in message
    assert str(expected.resolve()) in message
    assert "cais/wmdp-corpora" in message and "request access" in message.lower()
    assert "wmdp.topics" in message and "[cyber]" in message


def test_bio_file_found_in_a_folder_and_missing_path_explained(tmp_path: Path) -> None:
    path = bio_file(tmp_path / "gated")
    assert hub.require_bio_forget_file(tmp_path / "gated") == path
    with pytest.raises(hub_client.GatedDataError, match=r"bio_remove_dataset\.jsonl"):
        hub.require_bio_forget_file(None)


# -- retries and refusals --------------------------------------------------------------------------


def hub_error(cls: type[HfHubHTTPError], status: int, message: str = "") -> HfHubHTTPError:
    request = httpx2.Request("GET", "https://huggingface.co/api/datasets/x")
    return cls(
        f"{status} Client Error. {message}", response=httpx2.Response(status, request=request)
    )


class FailingSource:
    """Raises the given errors on the first calls, then delegates to a real source."""

    def __init__(
        self, errors: list[BaseException], inner: hub_sources.Source | None = None
    ) -> None:
        self.errors, self.inner, self.calls = list(errors), inner, 0

    def fetch(self, repo_id: str, config: str, split: str) -> hub_sources.Fetched:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        assert self.inner is not None
        return self.inner.fetch(repo_id, config, split)


def test_transient_errors_are_retried_with_exponential_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tofu_mirror(tmp_path / "mirror")
    delays: list[float] = []
    policy = hub_client.RetryPolicy(attempts=5, base_delay=1.5, sleep=delays.append)
    errors = [hub_error(HfHubHTTPError, 503), ConnectionError("connection reset")]
    source = FailingSource(errors, hub_sources.MirrorSource(tmp_path / "mirror"))
    with caplog.at_level(logging.WARNING):
        hub.download_benchmark("tofu", tmp_path / "data", source=source, policy=policy)
    assert delays == [1.5, 3.0]
    assert source.calls == len(layout.TOFU_LAYOUT) + 2
    assert "retry 1/4" in caplog.text and "retry 2/4" in caplog.text
    assert_layout(tmp_path / "data", hub.hub_layout("tofu"))


def test_retries_give_up_with_a_clear_error() -> None:
    source = FailingSource([hub_error(HfHubHTTPError, 429)] * 4)
    with pytest.raises(hub_client.HubUnavailableError, match="after 4 attempts"):
        hub_client.with_retries(
            lambda: source.fetch("a/b", "c", "d"), "a/b c/d", "a/b", "dataset", NO_WAIT
        )
    assert source.calls == 4


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (hub_error(GatedRepoError, 403, "gated"), "refused (HTTP 403)"),
        (hub_error(HfHubHTTPError, 401), "refused (HTTP 401)"),
        (hub_error(RepositoryNotFoundError, 404), "has no dataset"),
    ],
)
def test_refusals_are_not_retried(tmp_path: Path, error: BaseException, words: str) -> None:
    source = FailingSource([error])
    with pytest.raises(hub_client.HubAccessError) as caught:
        hub.download_benchmark("tofu", tmp_path / "data", source=source, policy=NO_WAIT)
    assert source.calls == 1
    message = str(caught.value)
    assert words in message and "'locuslab/TOFU'" in message
    assert "https://huggingface.co/datasets/locuslab/TOFU" in message
    assert "export HF_TOKEN" in message and "licence" in message


def test_errors_are_classified_through_their_causes() -> None:
    try:
        try:
            raise httpx2.ConnectError("network down")
        except httpx2.ConnectError as cause:
            raise LocalEntryNotFoundError("not in the cache") from cause
    except LocalEntryNotFoundError as wrapped:
        assert hub_client.classify(wrapped) == "transient"
    assert hub_client.classify(hub_error(HfHubHTTPError, 502)) == "transient"
    assert hub_client.classify(hub_error(RevisionNotFoundError, 404)) == "missing"
    assert hub_client.classify(ValueError("bad record")) == "other"


def test_other_errors_pass_through_unretried() -> None:
    source = FailingSource([KeyError("text")])
    with pytest.raises(KeyError):
        hub_client.with_retries(
            lambda: source.fetch("a/b", "c", "d"), "x", "a/b", "dataset", NO_WAIT
        )
    assert source.calls == 1


# -- HubSource over a fake client: the parquet branch and the datasets fallback -------------------


class FakeHub:
    """A hub served from local folders `{root}/{repo_id}/` (the parquet branch for datasets).

    Repos listed in `no_conversion` have no parquet branch; `load_dataset` then reads
    `{root}/{repo_id}/{config}/{split}` like `datasets` would."""

    SHA = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self, root: Path, no_conversion: tuple[str, ...] = ()) -> None:
        self.root, self.no_conversion = root, no_conversion
        self.snapshots: list[tuple[str, str, tuple[str, ...]]] = []

    def repo_files(self, repo_id: str, repo_type: str, revision: str | None) -> tuple[str, list]:
        if revision == hub_sources.PARQUET_BRANCH and repo_id in self.no_conversion:
            raise hub_error(RevisionNotFoundError, 404)
        folder = self.root / repo_id
        if not folder.is_dir():
            raise hub_error(RepositoryNotFoundError, 404)
        files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        return self.SHA, sorted(files)

    def snapshot(
        self,
        repo_id: str,
        repo_type: str,
        revision: str,
        allow_patterns: Any,
        local_dir: Path | None,
    ) -> Path:
        self.snapshots.append((repo_id, revision, tuple(allow_patterns)))
        source = self.root / repo_id
        target = local_dir or (self.root.parent / "cache" / repo_id / revision)
        for path in source.rglob("*"):
            relative = path.relative_to(source).as_posix()
            if path.is_file() and any(fnmatch(relative, p) for p in allow_patterns):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target / relative)
        (target / ".cache").mkdir(parents=True, exist_ok=True)  # as huggingface_hub leaves it
        (target / ".cache" / "meta").write_text("x")
        return target

    def load_dataset(self, repo_id: str, config: str, split: str) -> tuple[list, str | None]:
        files = hub_sources.split_files(self.root / repo_id / config / split)
        return hub_sources.read_records(files), self.SHA


def test_hub_source_reads_the_parquet_branch_or_falls_back_to_datasets(tmp_path: Path) -> None:
    muse_mirror(tmp_path / "hub")
    tofu_mirror(tmp_path / "hub")
    client = FakeHub(tmp_path / "hub", no_conversion=("locuslab/TOFU",))
    source = hub_sources.HubSource(client)
    provenance = hub.download_benchmark(
        "muse_books", tmp_path / "muse", {"muse": "muse-bench/MUSE-News"}, source=source
    )
    entry = provenance["files"]["knowmem/retain_qa.jsonl"]
    assert entry["via"] == "parquet-conversion" and entry["revision"] == FakeHub.SHA
    assert (
        "muse-bench/MUSE-News",
        FakeHub.SHA,
        ("knowmem/retain_qa/*.parquet",),
    ) in client.snapshots
    provenance = hub.download_benchmark("tofu", tmp_path / "tofu", source=source)
    assert provenance["files"]["full.jsonl"]["via"] == "datasets.load_dataset"
    assert_layout(tmp_path / "tofu", hub.hub_layout("tofu"))


# -- models ----------------------------------------------------------------------------------------


def model_repo(root: Path, repo: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / repo / name).parent.mkdir(parents=True, exist_ok=True)
        (root / repo / name).write_text(text)


MODEL_FILES = {
    "config.json": '{"model_type": "llama"}',
    "model-00001-of-00002.safetensors": "w1",
    "model-00002-of-00002.safetensors": "w2",
    "model.safetensors.index.json": "{}",
    "pytorch_model.bin": "old weights",
    "README.md": "card",
    "original/consolidated.00.pth": "meta format",
}
TOKENIZER_FILES = {"tokenizer.json": "{}", "tokenizer_config.json": "{}"}


def test_model_files_prefer_safetensors_and_skip_the_rest() -> None:
    wanted, weights = hub.model_files([*MODEL_FILES, *TOKENIZER_FILES])
    assert weights == "safetensors"
    assert wanted == sorted(
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            *TOKENIZER_FILES,
        ]
    )
    wanted, weights = hub.model_files(["config.json", "pytorch_model.bin"], with_tokenizer=False)
    assert (wanted, weights) == (["config.json", "pytorch_model.bin"], "bin")
    with pytest.raises(hub_client.DownloadError, match="no model weights"):
        hub.model_files(["config.json", "model.safetensors.index.json"])


def test_model_download_writes_a_folder_with_provenance(tmp_path: Path) -> None:
    model_repo(tmp_path / "hub", "org/model", {**MODEL_FILES, **TOKENIZER_FILES})
    out = tmp_path / "models" / "target"
    provenance = hub.download_model("org/model", out, "v1", client=FakeHub(tmp_path / "hub"))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "config.json",
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json",
            "provenance.json",
            CHECKSUMS_FILE,
            *TOKENIZER_FILES,
        ]
    )
    recorded = read_json(out / CHECKSUMS_FILE)  # the weights, hashed once at download
    assert sorted(recorded) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert all(recorded[n]["sha256"] == sha256_file(out / n) for n in recorded)
    assert read_json(out / "provenance.json") == provenance
    assert provenance["commit"] == FakeHub.SHA and provenance["revision_requested"] == "v1"
    assert provenance["files"]["config.json"] == sha256_file(out / "config.json")
    assert ".cache" not in json.dumps(provenance["files"])


def test_model_without_tokenizer_needs_a_tokenizer_repo(tmp_path: Path) -> None:
    model_repo(tmp_path / "hub", "org/model", MODEL_FILES)
    model_repo(tmp_path / "hub", "org/base", {**TOKENIZER_FILES, "tokenizer.model": "spm"})
    client, out = FakeHub(tmp_path / "hub"), tmp_path / "target"
    with pytest.raises(hub_client.DownloadError, match="ships no tokenizer files"):
        hub.download_model("org/model", out, client=client)
    assert not out.exists()
    provenance = hub.download_model("org/model", out, tokenizer_repo="org/base", client=client)
    assert (out / "tokenizer.model").read_text() == "spm"
    assert provenance["tokenizer"]["repo_id"] == "org/base"


# -- the token: from the environment, passed to the hub, never shown or stored --------------------


class PatchedHub:
    """Stand-ins for HfApi.repo_info and snapshot_download that record the token they get."""

    def __init__(self, root: Path, fail: Callable[[], BaseException] | None = None) -> None:
        self.root, self.fail, self.tokens = root, fail, []

    def repo_info(self, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        self.tokens.append(kwargs["token"])
        files = [p.name for p in (self.root / repo_id).iterdir()]
        siblings = [SimpleNamespace(rfilename=f) for f in files]
        return SimpleNamespace(sha=FakeHub.SHA, siblings=siblings)

    def snapshot_download(self, repo_id: str, **kwargs: Any) -> str:
        self.tokens.append(kwargs["token"])
        if self.fail is not None:
            raise self.fail()
        Path(kwargs["local_dir"]).mkdir(parents=True, exist_ok=True)
        for name in kwargs["allow_patterns"]:
            shutil.copy(self.root / repo_id / name, Path(kwargs["local_dir"]) / name)
        return str(kwargs["local_dir"])


def patch_hub(monkeypatch: pytest.MonkeyPatch, fake: PatchedHub) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", fake.repo_info)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)


def every_text_under(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_the_token_comes_from_the_environment_and_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    model_repo(tmp_path / "hub", "org/model", {**MODEL_FILES, **TOKENIZER_FILES})
    fake = PatchedHub(tmp_path / "hub")
    patch_hub(monkeypatch, fake)
    with caplog.at_level(logging.DEBUG):
        main(["download", "--what", "model", "--repo", "org/model", "--out", str(tmp_path / "m")])
    assert fake.tokens == [SECRET, SECRET]  # handed to the hub on every call
    assert SECRET not in every_text_under(tmp_path / "m")
    assert SECRET not in caplog.text

    monkeypatch.delenv("HF_TOKEN")
    fake.tokens.clear()
    hub.download_model("org/model", tmp_path / "m2")
    assert fake.tokens == [False, False]  # no stored login file is consulted either


def test_the_token_is_kept_out_of_errors_and_logs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    model_repo(tmp_path / "hub", "org/gated", {**MODEL_FILES, **TOKENIZER_FILES})
    # a library that echoes the token in its messages: first transient, then a refusal
    errors = [
        hub_error(HfHubHTTPError, 503, f"Authorization: Bearer {SECRET}"),
        hub_error(GatedRepoError, 403, f"token {SECRET} is not on the list"),
    ]
    fake = PatchedHub(tmp_path / "hub", fail=lambda: errors.pop(0))
    patch_hub(monkeypatch, fake)
    monkeypatch.setattr(hub_client, "RetryPolicy", lambda: NO_WAIT)
    out = tmp_path / "models" / "target"
    with caplog.at_level(logging.DEBUG), pytest.raises(SystemExit) as caught:
        main(["download", "--what", "model", "--repo", "org/gated", "--out", str(out)])
    message = str(caught.value)
    assert "org/gated" in message and "HF_TOKEN" in message and "<HF_TOKEN>" in message
    assert "retry 1/" in caplog.text
    captured = capsys.readouterr()
    for text in (message, caplog.text, captured.out, captured.err):
        assert SECRET not in text
    assert not out.exists()
    assert SECRET not in every_text_under(tmp_path)


# -- the command line ---------------------------------------------------------------------------


def test_cli_downloads_from_a_mirror_and_explains_the_gated_file(tmp_path: Path) -> None:
    wmdp_mirror(tmp_path / "mirror")
    out = tmp_path / "wmdp" / "data"
    common = [
        "download",
        "--what",
        "data",
        "--benchmark",
        "wmdp",
        "--mirror",
        str(tmp_path / "mirror"),
    ]
    assert main([*common, "--topics", "cyber", "--out", str(out)]) == 0
    assert read_json(out / hub.PROVENANCE_FILE)["topics"] == ["cyber"]
    missing = tmp_path / "gated" / hub.BIO_FORGET_FILE
    with pytest.raises(SystemExit, match=r"bio_remove_dataset\.jsonl"):
        main([*common, "--bio-forget-file", str(missing), "--out", str(tmp_path / "x")])
