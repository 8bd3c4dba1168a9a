"""The rehearsal hub: hub-shaped repos read through the mirror client by the real download code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bilevel_unlearning.data import hub, hub_client, hub_sources, layout, miniature
from bilevel_unlearning.data.rehearsal import model_repos, write_rehearsal_hub
from bilevel_unlearning.data.rehearsal_models import repo_shape, toy_config
from bilevel_unlearning.models.hf import load_model, load_tokenizer

REPO = Path(__file__).resolve().parents[3]


def paper_config() -> dict:
    from snakemake.utils import update_config

    config: dict = {}
    for name in ("config.yaml", "paper.yaml", "rehearsal.yaml"):
        update_config(config, yaml.safe_load((REPO / "config" / name).read_text()))
    return config


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rehearsal")
    write_rehearsal_hub(paper_config(), root / "hub", root / "gated" / hub.BIO_FORGET_FILE)
    return root


def test_every_benchmark_downloads_from_the_mirror_into_the_layout(mirror: Path) -> None:
    config = paper_config()
    client = hub_client.FolderHubClient(mirror / "hub")
    for benchmark in config["benchmarks"]:
        out = mirror / "data" / benchmark
        provenance = hub.download_benchmark(
            benchmark,
            out,
            config["hub"][benchmark].get("datasets"),
            config["wmdp"]["topics"],
            mirror / "gated" / hub.BIO_FORGET_FILE,
            hub_sources.HubSource(client),
        )
        assert set(provenance["files"]) == set(hub.hub_layout(benchmark))
        assert all(
            f.get("revision", "mirror-").startswith("mirror-") for f in provenance["files"].values()
        )
    # TOFU's real-authors questions go through the hub's option1..4 shape and back
    generated = miniature.build("tofu", config["seed"], config["miniature"])
    downloaded = [
        json.loads(line)
        for line in (mirror / "data/tofu/real_authors_perturbed.jsonl").read_text().splitlines()
    ]
    expected = generated["real_authors_perturbed.jsonl"]
    assert [r["answer"] for r in downloaded] == [r["answer"] for r in expected]
    assert [sorted(r["perturbed_answer"]) for r in downloaded] == [
        sorted(r["perturbed_answer"]) for r in expected
    ]
    # wikitext's empty lines are dropped, as from the hub
    wikitext = (mirror / "data/wmdp/wikitext/wikitext-2-raw-v1-test.jsonl").read_text()
    assert '"text": ""' not in wikitext
    assert set(layout.WMDP_LAYOUT) - hub.UNREAD_WMDP_FILES <= {p for p in provenance["files"]}


def test_model_repos_have_the_real_shapes_at_toy_width(mirror: Path) -> None:
    hub_root = mirror / "hub"
    muse = json.loads((hub_root / "muse-bench/MUSE-news_target/config.json").read_text())
    assert (muse["vocab_size"], muse["architectures"]) == (32000, ["LlamaForCausalLM"])
    assert muse["hidden_size"] == toy_config(repo_shape("muse-bench/MUSE-x").config)["hidden_size"]
    index = json.loads(
        (hub_root / "HuggingFaceH4/zephyr-7b-beta/model.safetensors.index.json").read_text()
    )
    assert len(set(index["weight_map"].values())) > 1  # sharded, as 7B repos ship
    assert not (hub_root / "muse-bench/MUSE-news_target/tokenizer_config.json").exists()
    tofu = json.loads(
        (hub_root / "open-unlearning/tofu_Llama-3.2-1B-Instruct_full/config.json").read_text()
    )
    assert (tofu["vocab_size"], tofu["num_key_value_heads"], tofu["tie_word_embeddings"]) == (
        128256,
        1,  # 32 query heads over 8 key-value heads at full size: groups of 4 stay groups of 4
        True,
    )
    assert model_repos(paper_config())["meta-llama/Llama-2-7b-hf"] is False  # tokenizer only


def test_downloaded_models_load_with_the_real_tokenizers_facts(mirror: Path) -> None:
    client = hub_client.FolderHubClient(mirror / "hub")
    cases = {
        "muse-bench/MUSE-news_target": "meta-llama/Llama-2-7b-hf",
        "open-unlearning/tofu_Llama-3.2-1B-Instruct_full": "meta-llama/Llama-3.2-1B-Instruct",
        "HuggingFaceH4/zephyr-7b-beta": None,
    }
    loaded = {}
    for repo, tokenizer_repo in cases.items():
        out = mirror / "models" / repo.replace("/", "--")
        provenance = hub.download_model(repo, out, None, tokenizer_repo, client)
        assert provenance["commit"].startswith("mirror-")
        raw = json.loads((out / "tokenizer_config.json").read_text())
        loaded[repo] = (raw, load_tokenizer(out), load_model(out))
    llama2, llama2_tok, llama2_model = loaded["muse-bench/MUSE-news_target"]
    assert raw_pad(llama2) is None and llama2["padding_side"] == "right"
    assert (llama2_tok.bos_token_id, llama2_tok.eos_token_id) == (1, 2)
    assert llama2_tok.pad_token == "</s>"  # models/hf.with_pad_token: none in the repo
    assert llama2_tok("a b").input_ids[0] == 1
    assert llama2_model.config.vocab_size == 32000
    llama3, llama3_tok, _ = loaded["open-unlearning/tofu_Llama-3.2-1B-Instruct_full"]
    assert raw_pad(llama3) is None
    assert (llama3_tok.bos_token_id, llama3_tok.eos_token_id) == (128000, 128009)
    prompt = llama3_tok.apply_chat_template(
        [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}],
        tokenize=False,
        add_generation_prompt=True,
        date_string="10 Apr 2025",
    )
    assert "Today Date: 10 Apr 2025" in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    zephyr, zephyr_tok, _ = loaded["HuggingFaceH4/zephyr-7b-beta"]
    assert zephyr["pad_token"] == "</s>" and "padding_side" not in zephyr
    assert zephyr_tok.pad_token_id == zephyr_tok.eos_token_id == 2


def raw_pad(tokenizer_config: dict) -> str | None:
    return tokenizer_config.get("pad_token")


def test_the_mirror_names_a_missing_repo_and_how_to_fill_it(tmp_path: Path) -> None:
    client = hub_client.FolderHubClient(tmp_path)
    with pytest.raises(hub_client.MirrorMissingError, match="hf download org/absent --local-dir"):
        hub.download_model("org/absent", tmp_path / "out", client=client)
    assert not (tmp_path / "out").exists()


def test_retain_logs_download_from_the_mirror_and_feed_forget_quality(
    mirror: Path, tmp_path: Path
) -> None:
    """The paper's forget-quality reference: open-unlearning's retain-model log, fetched by
    the path its model repo names, read as per-item truth ratios in item order; a file of
    another shape is refused with what to do."""
    from bilevel_unlearning.evaluation.run import tofu_oracle

    config = paper_config()
    oracle_repo = config["hub"]["tofu"]["models"]["retain90"]["repo"]
    path = hub.retain_log_path(oracle_repo)
    assert path == "tofu_Llama-3.2-1B-Instruct_retain90/TOFU_EVAL.json"
    client = hub_client.FolderHubClient(mirror / "hub")
    out = tmp_path / "retain_logs" / "forget10.json"
    found = hub.download_retain_log("open-unlearning/eval", path, out, client)
    written = json.loads(out.read_text())
    assert written["provenance"] == found and found["path"] == path
    items = len(
        miniature.build("tofu", config["seed"], config["miniature"])["forget10_perturbed.jsonl"]
    )
    by_index = written["forget_truth_ratio"]["value_by_index"]
    assert found["items"] == items and tofu_oracle(written) == [
        by_index[str(i)]["score"] for i in range(items)
    ]  # numeric order: "10" after "9"
    with pytest.raises(hub_client.DownloadError, match="has no tofu_x"):
        hub.download_retain_log("open-unlearning/eval", "tofu_x/TOFU_EVAL.json", out, client)
    with pytest.raises(hub_client.DownloadError, match="value_by_index"):
        tofu_oracle({"forget_truth_ratio": {"agg_value": 0.5}})
