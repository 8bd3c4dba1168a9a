"""The hub client: the only code that talks to the Hugging Face hub, with its errors, token
hygiene and retries.

The token is read from ``HF_TOKEN`` only, handed to the hub client per call, and never logged,
stored on an object, or written into provenance; error texts pass through ``redact``. Every hub
call goes through ``with_retries`` (backoff on network errors, 429 and 5xx; none on 401/403/404).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
TOKEN_ENV = "HF_TOKEN"
Records = list[dict[str, Any]]


# -- errors and token hygiene --------------------------------------------------------------------


class DownloadError(RuntimeError):
    """A download that cannot succeed without the user's action; the message says which."""


class HubAccessError(DownloadError):
    """401/403/404 from the hub: gated, private or wrong id. Never retried."""


class HubUnavailableError(DownloadError):
    """Transient errors persisted through every retry."""


class GatedDataError(DownloadError):
    """A gated file the user must obtain and place by hand (the WMDP bio forget corpus)."""


def hub_token() -> str | None:
    """The hub token, from the environment only (never from a config file or the CLI)."""
    return os.environ.get(TOKEN_ENV) or None


def token_argument() -> str | bool:
    """What to pass as `token=`: the env token, or False so no stored login file is used."""
    return hub_token() or False


_TOKEN_SHAPE = re.compile(r"hf_[A-Za-z0-9]{30,}")  # user access tokens: hf_ + 34 chars


def redact(text: str) -> str:
    """Remove the token (and anything shaped like a hub token) from a text before it is shown."""
    token = hub_token()
    if token:
        text = text.replace(token, "<HF_TOKEN>")
    return _TOKEN_SHAPE.sub("<HF_TOKEN>", text)


# -- retries ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: delays base, 2*base, 4*base, ... capped at max_delay seconds."""

    attempts: int = 6
    base_delay: float = 2.0
    max_delay: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (attempt - 1))


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """The exception and its causes: the hub wraps network errors in its own types."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a hub error (hub errors carry the response), else None."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:  # an older huggingface_hub runs on httpx or requests
        pass
    try:
        import requests

        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    return tuple(errors)


_MISSING_NAMES = {
    "RepositoryNotFoundError",
    "RevisionNotFoundError",
    "RemoteEntryNotFoundError",
    "DatasetNotFoundError",
}
_DENIED_NAMES = {"GatedRepoError", "DisabledRepoError"}


def classify(exc: BaseException) -> str:
    """denied (401/403, gated), missing (404, wrong id), transient (network, 429, 5xx) or other."""
    for cause in _causes(exc):
        status, name = http_status(cause), type(cause).__name__
        if name in _DENIED_NAMES or status in (401, 403):
            return "denied"
        if name in _MISSING_NAMES or status == 404:
            return "missing"
        if status in (408, 429) or (status is not None and status >= 500):
            return "transient"
        if isinstance(cause, _transport_errors()) or name == "XetDownloadError":
            return "transient"
    return "other"


def _repo_url(repo_id: str, repo_type: str) -> str:
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"https://huggingface.co/{prefix}{repo_id}"


def access_message(repo_id: str, repo_type: str, what: str, exc: BaseException) -> str:
    """Why a hub request was refused and what the user does about it (no token in it)."""
    status = next((s for c in _causes(exc) if (s := http_status(c)) is not None), None)
    url = _repo_url(repo_id, repo_type)
    token_state = "HF_TOKEN is set" if hub_token() else "HF_TOKEN is not set"
    if classify(exc) == "missing":
        head = (
            f"{what}: the hub has no {repo_type} {repo_id!r} (or not that revision/file; "
            f"HTTP {status or 404}). Check the id and revision in the config's `hub` section."
        )
    else:
        head = f"{what}: access to the {repo_type} {repo_id!r} was refused (HTTP {status})."
    return (
        f"{head}\nIf the repository is gated or private: open {url}, log in, accept its "
        "licence / request access, create a read token (https://huggingface.co/settings/tokens) "
        f"and `export {TOKEN_ENV}=<your token>` before running ({token_state}).\n"
        f"Hub said: {redact(str(exc))[:500]}"
    )


def with_retries(
    call: Callable[[], T],
    what: str,
    repo_id: str,
    repo_type: str,
    policy: RetryPolicy | None = None,
) -> T:
    """Run a hub call; retry transient failures with backoff, fail at once on refusals."""
    policy = policy or RetryPolicy()
    for attempt in range(1, policy.attempts + 1):
        try:
            return call()
        except MirrorMissingError:
            raise  # its own message says where the mirror lacks the files
        except Exception as exc:
            kind = classify(exc)
            if kind in ("denied", "missing"):
                raise HubAccessError(access_message(repo_id, repo_type, what, exc)) from None
            if kind != "transient":
                raise
            summary = redact(f"{type(exc).__name__}: {exc}")[:300]
            if attempt == policy.attempts:
                raise HubUnavailableError(
                    f"{what}: {repo_id} still failing after {attempt} attempts ({summary}). "
                    "The hub or the network is down; rerun later (finished files are kept)."
                ) from None
            delay = policy.delay(attempt)
            log.warning(
                "%s: transient error (%s); retry %d/%d in %.0f s",
                what,
                summary,
                attempt,
                policy.attempts - 1,
                delay,
            )
            policy.sleep(delay)
    raise AssertionError("unreachable")


# -- the hub client (the only place that talks to the hub) -------------------------------------


class HubClient(Protocol):
    """What the download stage needs from the hub; tests substitute a local fake."""

    def repo_files(self, repo_id: str, repo_type: str, revision: str | None) -> tuple[str, list]:
        """(commit sha, file paths) of a revision."""
        ...

    def snapshot(
        self,
        repo_id: str,
        repo_type: str,
        revision: str,
        allow_patterns: Sequence[str],
        local_dir: Path | None,
    ) -> Path:
        """Download the matching files; into local_dir, or the hub cache when None."""
        ...

    def load_dataset(self, repo_id: str, config: str, split: str) -> tuple[Records, str | None]:
        """(records, commit sha) through `datasets`, for splits without a parquet conversion."""
        ...


class HfHubClient:
    """huggingface_hub and datasets, with the token from the environment on every call."""

    def repo_files(self, repo_id: str, repo_type: str, revision: str | None) -> tuple[str, list]:
        from huggingface_hub import HfApi

        info = HfApi().repo_info(
            repo_id, repo_type=repo_type, revision=revision, token=token_argument()
        )
        return str(info.sha), [s.rfilename for s in info.siblings or []]

    def snapshot(
        self,
        repo_id: str,
        repo_type: str,
        revision: str,
        allow_patterns: Sequence[str],
        local_dir: Path | None,
    ) -> Path:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=list(allow_patterns),
            local_dir=local_dir,
            token=token_argument(),
        )
        return Path(folder)

    def load_dataset(self, repo_id: str, config: str, split: str) -> tuple[Records, str | None]:
        import datasets

        table = datasets.load_dataset(repo_id, config, split=split, token=token_argument())
        sha, _ = self.repo_files(repo_id, "dataset", None)
        return [dict(row) for row in table], sha


class MirrorMissingError(DownloadError):
    """A repo or file the mirror does not hold; classified as missing, like the hub's 404."""

    status_code = 404

    @property
    def response(self) -> MirrorMissingError:  # classify() reads response.status_code
        return self


@dataclass(frozen=True)
class FolderHubClient:
    """A local mirror in place of the hub, for air-gapped clusters and the rehearsal.

    The mirror holds each repo's files at `{root}/{repo_id}/`, as `hf download <repo>
    --local-dir {root}/<repo>` writes them (a dataset: its parquet conversion, `hf download
    <repo> --repo-type dataset --revision refs/convert/parquet`). A repo's "commit" is a digest
    of its file list and sizes; its files are checksummed again where they are written. The
    revision is not looked up: a mirror holds one revision of each repo (recorded in provenance
    by the download, as `revision_requested`)."""

    root: Path

    def _folder(self, repo_id: str) -> Path:
        folder = Path(self.root) / repo_id
        if not folder.is_dir():
            raise MirrorMissingError(
                f"the hub mirror {self.root} has no {repo_id}: put its files at {folder} "
                f"(hf download {repo_id} --local-dir {folder}), or unset hub.mirror to use the hub"
            )
        return folder

    def _files(self, folder: Path) -> list[str]:
        return sorted(
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and ".cache" not in p.relative_to(folder).parts
        )

    def repo_files(self, repo_id: str, repo_type: str, revision: str | None) -> tuple[str, list]:
        import hashlib

        folder = self._folder(repo_id)
        files = self._files(folder)
        listing = "\n".join(f"{f}\t{(folder / f).stat().st_size}" for f in files)
        return "mirror-" + hashlib.sha256(listing.encode()).hexdigest()[:40], files

    def snapshot(
        self,
        repo_id: str,
        repo_type: str,
        revision: str,
        allow_patterns: Sequence[str],
        local_dir: Path | None,
    ) -> Path:
        import shutil
        from fnmatch import fnmatch

        folder = self._folder(repo_id)
        if local_dir is None:
            return folder
        for name in self._files(folder):
            if any(fnmatch(name, pattern) for pattern in allow_patterns):
                target = Path(local_dir) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / name, target)
        return Path(local_dir)

    def load_dataset(self, repo_id: str, config: str, split: str) -> tuple[Records, str | None]:
        raise MirrorMissingError(
            f"the hub mirror holds no parquet files of {repo_id} {config}/{split}: put them at "
            f"{Path(self.root) / repo_id / config / split}/ (hf download {repo_id} --repo-type "
            "dataset --revision refs/convert/parquet)"
        )
