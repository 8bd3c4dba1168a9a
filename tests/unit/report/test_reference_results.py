"""config/reference_results.yaml: every published number is a fraction of a metric we report,
names a source, and appears once; every row is one a paper-config run could produce."""

from __future__ import annotations

import yaml
from conftest import REPO

from bilevel_unlearning import metric_catalog as catalog
from bilevel_unlearning.runs import seedless_row


def test_reference_numbers_are_well_formed_fractions_with_sources() -> None:
    data = yaml.safe_load((REPO / "config" / "reference_results.yaml").read_text())
    keys = [(e["benchmark"], e["row"], e["metric"]) for e in data["entries"]]
    assert len(keys) == len(set(keys)), "a number is listed twice"
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    methods = set(paper["methods"]) | set(
        yaml.safe_load((REPO / "config/config.yaml").read_text())["methods"]
    )
    for entry in data["entries"]:
        assert entry["source"] in data["sources"], entry
        metric = entry["metric"]
        assert metric in catalog.METRICS or metric == "privleak_auc", entry
        bound = 2.0 if metric == "privleak" else 1.0  # PrivLeak's relative gap may pass -100%
        assert -bound <= float(entry["value"]) <= bound, f"not a fraction: {entry}"
        if not entry.get("reference_model"):
            method = seedless_row(entry["row"]).split("-")[0]
            assert method in methods, f"no method {method!r} for {entry}"
