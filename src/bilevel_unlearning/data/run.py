"""The data stage: a benchmark's files in the one layout every later stage reads
(data/layout.py), generated on the spot (the miniature) or downloaded from the hub."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def data_step(*, benchmark: str, seed: int, sizes: Mapping[str, Any], out: Path) -> None:
    """Generate a miniature benchmark's files from the seed (config section `miniature`)."""
    from bilevel_unlearning.data import miniature

    miniature.generate(benchmark, seed, sizes, out)
    log.info("wrote the miniature %s benchmark to %s", benchmark, out)


def download_step(
    *,
    benchmark: str | None,
    out: Path,
    datasets: Mapping[str, Any] | None = None,
    topics: Sequence[str] = (),
    bio_forget_file: str | None = None,
    mirror: Path | None = None,
    model: Mapping[str, Any] | None = None,
    retain_log: Mapping[str, str] | None = None,
) -> None:
    """Download a real benchmark's data (or, with `model` {repo, revision, tokenizer}, a model
    folder; with `retain_log` {repo, path}, a retain model's published evaluation log, TOFU's
    forget-quality reference) from the hub; a download problem ends the job with its message,
    not a traceback."""
    from bilevel_unlearning.data import hub, hub_client, hub_sources

    try:
        client = hub_client.FolderHubClient(mirror) if mirror else None
        if retain_log is not None:
            found = hub.download_retain_log(retain_log["repo"], retain_log["path"], out, client)
            log.info(
                "%s at %s: %d items, into %s", found["path"], found["commit"], found["items"], out
            )
            return
        if model is not None:
            result = hub.download_model(
                model["repo"], out, model["revision"], model["tokenizer"], client
            )
            log.info("downloaded %s at %s into %s", model["repo"], result["commit"], out)
            return
        if not benchmark:
            raise SystemExit("download --what data needs --benchmark")
        source = hub_sources.HubSource(client) if client else None
        hub.download_benchmark(benchmark, out, datasets, topics, bio_forget_file, source)
        log.info("wrote the %s benchmark from the hub to %s", benchmark, out)
    except hub_client.DownloadError as exc:
        raise SystemExit(f"error: {exc}") from None
