"""Which models a benchmark needs, and under source hub which are built here from a base."""

from __future__ import annotations

import re

import pytest
from conftest import shipped_config

from bilevel_unlearning.models.recipes import (
    base_model_dir,
    base_models,
    built_models,
    built_pattern,
    model_roles,
)


@pytest.fixture(scope="module")
def paper() -> dict:
    return shipped_config("paper.yaml")


def test_roles_follow_the_configured_splits(paper: dict) -> None:
    assert model_roles("muse_news", paper) == ["target", "retrain"]
    splits = {**paper, "tofu": {**paper["tofu"], "forget_splits": ["forget01", "forget10"]}}
    assert model_roles("tofu", splits) == ["full", "retain99", "retain90"]


def test_a_base_is_downloaded_once_for_every_role_built_from_it(paper: dict) -> None:
    assert built_models(paper) == {} and base_models(paper) == {}  # the paper downloads all
    base = {"repo": None, "build_from": "meta-llama/Llama-2-7b-hf", "revision": "main@v1"}
    hub = {**paper["hub"]}
    for benchmark, role in (("muse_news", "target"), ("muse_books", "retrain")):
        models = {**hub[benchmark]["models"], role: base}
        hub[benchmark] = {**hub[benchmark], "models": models}
    built = built_models({**paper, "hub": hub})
    folder = "results/base_models/meta-llama--Llama-2-7b-hf--main_v1"
    assert built == {("muse_news", "target"): folder, ("muse_books", "retrain"): folder}
    assert base_models({**paper, "hub": hub}) == {folder: base}
    assert base_model_dir("r", {"build_from": "a/b"}) == "r/base_models/a--b"
    assert built_models({**paper, "hub": hub, "source": "miniature"}) == {}
    # the fine-tuning rule claims exactly the built folders
    pattern = re.compile(f"(?:{built_pattern(built)})/models/\\w+$")
    assert pattern.fullmatch("muse_news/models/target")
    assert not pattern.fullmatch("muse_news/models/retrain")
