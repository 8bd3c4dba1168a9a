"""docs/paper_settings.md is what the paper config resolves to, each setting with a source."""

from __future__ import annotations

import pytest
from conftest import REPO

from bilevel_unlearning import paper_settings
from bilevel_unlearning.io import read_yaml


def sources() -> dict:
    return read_yaml(REPO / "config" / "paper_sources.yaml")


def test_the_committed_document_equals_a_fresh_rendering() -> None:
    fresh = paper_settings.render(paper_settings.paper_config(REPO), sources())
    committed = (REPO / "docs" / "paper_settings.md").read_text()
    assert committed == fresh, "run: python -m bilevel_unlearning.cli paper-settings"


def test_the_document_shows_resolved_values_with_their_sources() -> None:
    text = (REPO / "docs" / "paper_settings.md").read_text()
    assert "| blur_npo | `beta` | 0.15 | B MUSE/baselines/baselines/iterative.py:142" in text
    assert "| rmu_tofu | `trainable` | all | O configs/trainer/RMU.yaml:12-13" in text
    assert "| blur_rmu | `max_steps_per_epoch` | 150 |" in text


def test_a_setting_without_a_source_stops_the_document() -> None:
    incomplete = sources()
    del incomplete["methods"]["*"]["blur_npo"]["beta"]
    del incomplete["benchmarks"]["*"]["clip_norm"]
    with pytest.raises(paper_settings.MissingSourceError, match="muse_news blur_npo beta"):
        paper_settings.render(paper_settings.paper_config(REPO), incomplete)
