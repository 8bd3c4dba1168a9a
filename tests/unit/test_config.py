"""Config validation: the shipped default passes, and each kind of mistake is caught with a
message that names the key path and says what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from bilevel_unlearning.config import (
    ConfigError,
    iter_schema_keys,
    load_config,
    load_schema,
    validate_config,
)


@pytest.fixture(scope="session")
def default_config_path() -> Path:
    return REPO / "config" / "config.yaml"


@pytest.fixture(scope="session")
def schema_path() -> Path:
    return REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="session")
def default_config(default_config_path: Path, schema_path: Path) -> dict:
    return load_config(default_config_path, schema_path)


def problems_of(config: dict, schema_path: Path) -> str:
    """The ConfigError message for a config that must be rejected."""
    with pytest.raises(ConfigError) as caught:
        validate_config(config, schema_path)
    return str(caught.value)


def test_default_config_validates(default_config_path: Path, schema_path: Path) -> None:
    config = load_config(default_config_path, schema_path)
    assert validate_config(config, schema_path) is config
    assert set(config["benchmarks"]) == {"muse_news", "muse_books", "tofu", "wmdp"}


def test_default_schema_path_is_found(default_config: dict) -> None:
    validate_config(copy.deepcopy(default_config))


def test_schema_is_valid_2020_12(schema_path: Path) -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(load_schema(schema_path))


def test_every_schema_key_is_described_and_documented(schema_path: Path) -> None:
    readme = (REPO / "config" / "README.md").read_text(encoding="utf-8")
    schema = load_schema(schema_path)
    keys = list(iter_schema_keys(schema))
    keys += list(iter_schema_keys(schema["$defs"]["method"], "methods.<name>"))
    hub_entry = schema["properties"]["hub"]["additionalProperties"]
    keys += list(iter_schema_keys(hub_entry, "hub.<benchmark>"))
    keys += list(iter_schema_keys(schema["$defs"]["hub_model"], "hub.<benchmark>.models.<role>"))
    assert len(keys) > 50
    for path, sub in keys:
        assert sub.get("description"), f"schema key {path} has no description"
        leaf = path.rsplit(".", 1)[-1]
        assert f"`{leaf}`" in readme or f"`{path}`" in readme, f"{path} is not in the README"


def test_missing_schema_file_is_a_clear_error(default_config: dict, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="schema_path"):
        validate_config(default_config, tmp_path / "absent.yaml")


Mutation = Callable[[dict], Any]


def _set(path: str, value: Any) -> Mutation:
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _all(*mutations: Mutation) -> Mutation:
    """Several changes at once, so a case does not depend on the default's other values."""

    def mutate(config: dict) -> None:
        for mutation in mutations:
            mutation(config)

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _rename(path: str, new_name: str) -> Mutation:
    def mutate(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[new_name] = node.pop(last)

    return mutate


def _append(path: str, value: Any) -> Mutation:
    def mutate(config: dict) -> None:
        node = config
        for part in path.split("."):
            node = node[part]
        node.append(value)

    return mutate


# (id, mutation, fragments that must all appear in the message)
BAD_CONFIGS: list[tuple[str, Mutation, list[str]]] = [
    (
        "unknown benchmark",
        _append("benchmarks", "mmlu"),
        ["config key 'benchmarks[4]'", "'mmlu'", "one of: muse_news, muse_books, tofu, wmdp"],
    ),
    (
        "unknown method referenced in unlearn",
        _append("unlearn.tofu.methods", "npo_gdrr"),
        ["config key 'unlearn.tofu.methods[5]'", "'npo_gdrr'", "ga_gdr", "blur_rmu"],
    ),
    (
        "unknown method swept",
        _append("sweeps.muse_news.methods", "blur_npp"),
        ["config key 'sweeps.muse_news.methods[3]'", "'blur_npp'", "did you mean 'blur_npo'"],
    ),
    (
        "swept method without a retain loss",
        _append("sweeps.muse_news.methods", "npo"),
        ["config key 'sweeps.muse_news.methods[3]'", "'npo'", "gamma does not act"],
    ),
    (
        "zero gamma in a sweep",
        _append("sweeps.muse_news.gamma", 0),
        ["config key 'sweeps.muse_news.gamma[3]'", "must be > 0"],
    ),
    (
        "table epoch not evaluated",
        _set("evaluate.muse_news.table_epoch", 3),
        ["config key 'evaluate.muse_news.table_epoch'", "one of [1, 2]"],
    ),
    (
        "geometry figure of a run that does not exist",
        _append("figures.geometry.methods", "rmu"),
        ["config key 'figures.geometry.methods[2]'", "not run on muse_news"],
    ),
    (
        "ablation figure without a sweep",
        _set("figures.ablation", "tofu"),
        ["config key 'figures.ablation'", "add sweeps.tofu"],
    ),
    (
        "unknown forget loss",
        _set("methods.npo.forget_loss", "dpo"),
        ["config key 'methods.npo.forget_loss'", "'dpo'", "one of: ga, npo, simnpo, rmu"],
    ),
    (
        "string for an int size",
        _set("miniature.tofu.authors", "forty"),
        ["config key 'miniature.tofu.authors'", "'forty'", "must be an integer"],
    ),
    (
        "float for an int size",
        _set("unlearn.wmdp.epochs", 1.0),
        ["config key 'unlearn.wmdp.epochs'", "1.0", "must be an integer"],
    ),
    (
        "exponent without a dot",
        _set("models.finetune.learning_rate", "1e-4"),
        ["config key 'models.finetune.learning_rate'", "must be a number", "1.0e-4"],
    ),
    (
        "negative learning rate",
        _set("unlearn.muse_news.learning_rate", -0.1),
        ["config key 'unlearn.muse_news.learning_rate': -0.1 is not allowed: must be > 0"],
    ),
    (
        "evaluate epoch beyond unlearn epochs",
        _set("evaluate.muse_news.epochs", [1, 3]),
        [
            "config key 'evaluate.muse_news.epochs[1]'",
            "epoch 3 will not exist: unlearn.muse_news.epochs is 2",
        ],
    ),
    (
        "missing required key",
        _delete("seed"),
        ["config key 'seed' is missing"],
    ),
    (
        "missing nested required key",
        _delete("miniature.muse.icl_examples"),
        ["config key 'miniature.muse.icl_examples' is missing"],
    ),
    (
        "misspelled key",
        _rename("miniature.muse.forget_entities", "forget_entites"),
        [
            "config key 'miniature.muse.forget_entites' is not a known key",
            "forget_entities",
            "did you mean 'forget_entities'",
            "config key 'miniature.muse.forget_entities' is missing",
        ],
    ),
    (
        "bad precision",
        _set("precision", "fp16"),
        ["config key 'precision'", "'fp16'", "one of: float32, bfloat16, float16, mixed"],
    ),
    (
        "unknown tofu split",
        _set("tofu.forget_splits", ["forget05", "forget20"]),
        [
            "config key 'tofu.forget_splits[1]'",
            "'forget20'",
            "one of: forget01, forget05, forget10",
        ],
    ),
    (
        "repeated wmdp topic",
        _set("wmdp.topics", ["bio", "bio"]),
        ["config key 'wmdp.topics'", "must be unique", "'bio'"],
    ),
    (
        "unknown benchmark as unlearn key",
        _rename("unlearn.tofu", "tofuu"),
        [
            "config key 'unlearn.tofuu'",
            "one of: muse_news",
            "did you mean 'tofu'",
            "'unlearn.tofu'",
        ],
    ),
    (
        "listed benchmark without evaluate entry",
        _delete("evaluate.wmdp"),
        ["config key 'evaluate.wmdp' is missing", "listed in 'benchmarks'"],
    ),
    (
        "bad method name",
        _rename("methods.ga", "GA-1"),
        ["config key 'methods.GA-1'", "lower-case letters, digits and underscores"],
    ),
    (
        "blur rule without gamma or alpha",
        _delete("methods.blur_ga.gamma"),
        ["config key 'methods.blur_ga.gamma'", "rule 'blur' needs exactly one of gamma", "neither"],
    ),
    (
        "blur rule with both gamma and alpha",
        _set("methods.blur_ga.alpha", 800.0),
        ["config key 'methods.blur_ga.gamma'", "exactly one of gamma or alpha", "both"],
    ),
    (
        "weighted sum without gamma",
        _delete("methods.npo_gdr.gamma"),
        ["config key 'methods.npo_gdr.gamma' is missing", "rule 'weighted_sum' needs gamma"],
    ),
    (
        "alpha on a rule that does not read it",
        _set("methods.npo_gdr.alpha", 2.0),
        ["config key 'methods.npo_gdr.alpha': 2.0", "alpha is read only by rule 'blur'"],
    ),
    (
        "rule without retain loss",
        _delete("methods.ga_gdr.retain_loss"),
        ["config key 'methods.ga_gdr.retain_loss' is missing", "nll, kl, rmu"],
    ),
    (
        "retain loss without rule",
        _delete("methods.npo_klr.rule"),
        ["config key 'methods.npo_klr.rule' is missing", "weighted_sum, blur, blur_reversed"],
    ),
    (
        "rmu forget loss with nll retain loss",
        _set("methods.rmu.retain_loss", "nll"),
        ["config key 'methods.rmu.retain_loss'", "'nll'", "pairs only with retain_loss 'rmu'"],
    ),
    (
        "rmu retain loss with npo forget loss",
        _set("methods.npo_gdr.retain_loss", "rmu"),
        ["config key 'methods.npo_gdr.retain_loss'", "pairs only with forget_loss 'rmu'"],
    ),
    (
        "hyperparameter the loss does not read",
        _set("methods.ga_gdr.beta", 0.1),
        ["config key 'methods.ga_gdr.beta'", "only read when forget_loss is npo or simnpo"],
    ),
    (
        "share above one",
        _set("models.finetune.replay_general", 1.5),
        ["config key 'models.finetune.replay_general': 1.5", "must be <= 1"],
    ),
    (
        "odd retain entities",
        _set("miniature.muse.retain_entities", 25),
        ["config key 'miniature.muse.retain_entities': 25", "multiple of 2"],
    ),
    (
        "rmu layer beyond the model",
        _all(_set("models.architecture.num_hidden_layers", 4), _set("methods.rmu.layers", [2, 4])),
        ["config key 'methods.rmu.layers[1]': 4", "num_hidden_layers (4)"],
    ),
    (
        "heads do not divide the width",
        _all(
            _set("models.architecture.hidden_size", 128),
            _set("models.architecture.num_attention_heads", 3),
        ),
        ["config key 'models.architecture.hidden_size': 128", "2 * num_attention_heads (6)"],
    ),
    (
        "training longer than the positions",
        _all(
            _set("models.architecture.max_position_embeddings", 512),
            _set("models.pretrain.max_length", 1024),
        ),
        ["config key 'models.pretrain.max_length': 1024", "max_position_embeddings (512)"],
    ),
    (
        "NaN gamma",
        _set("methods.blur_npo.gamma", float("nan")),
        ["config key 'methods.blur_npo.gamma': nan is not allowed: must be a finite number"],
    ),
    (
        "infinite learning rate",
        _set("unlearn.tofu.learning_rate", float("inf")),
        ["config key 'unlearn.tofu.learning_rate': inf is not allowed: must be a finite number"],
    ),
    (
        "NaN in a sweep grid",
        _set("sweeps.muse_news.gamma", [0.5, float("nan")]),
        ["config key 'sweeps.muse_news.gamma[1]': nan is not allowed"],
    ),
    (
        "unlearning sequences longer than the positions",
        _set("unlearn.muse_news.max_length", 1024),
        ["config key 'unlearn.muse_news.max_length': 1024", "max_position_embeddings (512)"],
    ),
    (
        "WMDP forget length longer than the positions",
        _set("unlearn.wmdp.forget_lengths", {"bio": 64, "cyber": 600}),
        ["config key 'unlearn.wmdp.forget_lengths.cyber': 600", "max_position_embeddings"],
    ),
    (
        "override of an undefined method",
        _set("unlearn.muse_news.method_overrides", {"npo_gdx": {"beta": 0.2}}),
        ["'unlearn.muse_news.method_overrides.npo_gdx'", "no such method", "npo_gdr"],
    ),
    (
        "override that breaks its method",
        _set("unlearn.muse_news.method_overrides", {"npo": {"delta": 0.5}}),
        ["config key 'methods.npo.delta'", "(with unlearn.muse_news.method_overrides.npo)"],
    ),
    (
        "selection on a metric the table does not show",
        _set("evaluate.tofu.select", {"metric": "knowmem_forget", "direction": "min"}),
        ["config key 'evaluate.tofu.select.metric': 'knowmem_forget'", "forget_quality"],
    ),
    (
        "selection against an oracle WMDP does not have",
        _set(
            "evaluate.wmdp.select",
            {
                "metric": "wmdp_bio_acc",
                "direction": "min",
                "constraint": {"metric": "mmlu_acc", "within": 0.05, "of": "oracle"},
            },
        ),
        ["'evaluate.wmdp.select.constraint.of'", "no oracle model: use start"],
    ),
    (
        "selection without a direction",
        _set("evaluate.muse_news.select", {"metric": "knowmem_forget"}),
        ["evaluate.muse_news.select", "direction"],
    ),
    (
        "mapping replaced by a scalar",
        _set("muse", 5),
        ["config key 'muse': 5 is not allowed: must be a mapping"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [pytest.param(mutate, fragments, id=name) for name, mutate, fragments in BAD_CONFIGS],
)
def test_bad_config_is_rejected_with_a_useful_message(
    default_config: dict, schema_path: Path, mutate: Mutation, fragments: list[str]
) -> None:
    config = copy.deepcopy(default_config)
    mutate(config)
    message = problems_of(config, schema_path)
    for fragment in fragments:
        assert fragment in message
    assert message.rstrip().endswith("every key is documented in config/README.md.")


def test_several_errors_are_all_reported(default_config: dict, schema_path: Path) -> None:
    config = copy.deepcopy(default_config)
    _set("precision", "fp8")(config)
    _set("unlearn.tofu.learning_rate", 0)(config)
    _append("unlearn.wmdp.methods", "rmu_v2")(config)
    _set("evaluate.tofu.epochs", [2, 5])(config)  # keeps table_epoch 2 an evaluated epoch
    _delete("results_dir")(config)
    with pytest.raises(ConfigError) as caught:
        validate_config(config, schema_path)
    problems = caught.value.problems
    assert len(problems) == 5
    message = str(caught.value)
    assert "(5 problems)" in message
    for key in (
        "'precision'",
        "'unlearn.tofu.learning_rate'",
        "'unlearn.wmdp.methods[2]'",
        "'evaluate.tofu.epochs[1]'",
        "'results_dir' is missing",
    ):
        assert key in message


def test_subset_of_benchmarks_is_allowed(default_config: dict, schema_path: Path) -> None:
    """`--config 'benchmarks=[tofu]'` merges into the defaults; the other entries stay."""
    config = copy.deepcopy(default_config)
    config["benchmarks"] = ["tofu"]
    validate_config(config, schema_path)


def test_optional_method_hyperparameters_are_accepted(
    default_config: dict, schema_path: Path
) -> None:
    config = copy.deepcopy(default_config)
    config["methods"]["npo_muse"] = {"forget_loss": "npo", "beta": 0.1, "npo_form": "muse_logits"}
    config["methods"]["ga_klr_raw"] = {
        "forget_loss": "ga",
        "retain_loss": "kl",
        "rule": "blur_reversed",
        "gamma": 1.0,
        "kl_form": "raw_logits",
    }
    config["models"]["architecture"]["num_hidden_layers"] = 4
    config["methods"]["rmu"].update(layers=[1, 2, 3], steering_coefficient=6.5)
    validate_config(config, schema_path)


def test_load_config_rejects_duplicate_keys(tmp_path: Path, schema_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("seed: 0\nseed: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="found key 'seed' twice"):
        load_config(path, schema_path)


def test_load_config_names_the_file(
    tmp_path: Path, default_config: dict, schema_path: Path
) -> None:
    config = copy.deepcopy(default_config)
    config["seed"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, schema_path)
    assert str(path) in str(caught.value)
    assert "config key 'seed': -1 is not allowed: must be >= 0" in str(caught.value)


def test_empty_file_is_rejected(tmp_path: Path, schema_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path, schema_path)


# -- source hub: config/paper.yaml and the `hub` section --------------------------------------


@pytest.fixture(scope="session")
def paper_config(default_config: dict, schema_path: Path) -> dict:
    """config/paper.yaml merged over the default, as `--configfile config/paper.yaml` does."""
    from snakemake.utils import update_config

    config = copy.deepcopy(default_config)
    update_config(config, yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
    return validate_config(config, schema_path)


def test_paper_config_is_the_real_experiment(paper_config: dict) -> None:
    assert paper_config["source"] == "hub" and paper_config["precision"] == "mixed"
    assert paper_config["expected_tables"] is None
    hub = paper_config["hub"]
    assert hub["muse_news"]["models"]["target"]["repo"] == "muse-bench/MUSE-news_target"
    assert hub["wmdp"]["models"]["original"]["repo"] == "HuggingFaceH4/zephyr-7b-beta"
    assert paper_config["methods"]["rmu"]["layers"] == [5, 6, 7]  # not the miniature's
    assert paper_config["unlearn"]["muse_news"]["max_length"] == 2048
    assert paper_config["evaluate"]["muse_news"]["table_epoch"] == 1


@pytest.mark.parametrize(
    "override",
    [
        {"benchmarks": ["tofu"]},
        {"benchmarks": ["wmdp"], "wmdp": {"topics": ["cyber"]}},
        {"tofu": {"forget_splits": ["forget05"]}},
    ],
    ids=["tofu only", "wmdp cyber only", "one tofu split"],
)
def test_paper_config_subsets_validate(paper_config: dict, schema_path: Path, override) -> None:
    from snakemake.utils import update_config

    config = copy.deepcopy(paper_config)
    update_config(config, override)
    validate_config(config, schema_path)


def test_hub_model_roles_are_the_models_stages(default_config: dict, paper_config: dict) -> None:
    from bilevel_unlearning.config import reference_model_roles
    from bilevel_unlearning.models.recipes import model_roles

    for config in (default_config, paper_config):
        for benchmark in ("muse_news", "muse_books", "tofu", "wmdp"):
            assert reference_model_roles(benchmark, config) == model_roles(benchmark, config)


def test_a_built_model_can_replace_a_downloaded_one(paper_config: dict, schema_path: Path) -> None:
    """An overriding file sets repo to null (merging cannot delete it) and names a base."""
    from snakemake.utils import update_config

    config = copy.deepcopy(paper_config)
    built = {"repo": None, "tokenizer": None, "build_from": "meta-llama/Llama-2-7b-hf"}
    update_config(
        config,
        {
            "hub": {"muse_news": {"models": {"target": built}}},
            "models": {"finetune": {"replay_general": 0.0, "max_length": 2048}},
        },
    )
    validate_config(config, schema_path)


HUB_BAD_CONFIGS: list[tuple[str, Mutation, list[str]]] = [
    (
        "listed benchmark without hub entry",
        _delete("hub.tofu"),
        ["config key 'hub.tofu' is missing", "full, retain99, retain95, retain90"],
    ),
    (
        "oracle of a configured split missing",
        _delete("hub.tofu.models.retain99"),
        ["config key 'hub.tofu.models.retain99' is missing", "{build_from: <hub id"],
    ),
    (
        "model both downloaded and built",
        _set("hub.wmdp.models.original.build_from", "mistralai/Mistral-7B-v0.1"),
        ["config key 'hub.wmdp.models.original' needs exactly one of repo", "not both"],
    ),
    (
        "model neither downloaded nor built",
        _set("hub.wmdp.models.original", {"revision": "main"}),
        ["config key 'hub.wmdp.models.original' needs exactly one of repo", "neither"],
    ),
    (
        "dataset role of another benchmark",
        _set("hub.tofu.datasets.corpora", "cais/wmdp-corpora"),
        [
            "config key 'hub.tofu.datasets.corpora'",
            "tofu reads the dataset roles tofu, retain_logs only",
        ],
    ),
    (
        "unknown dataset role",
        _set("hub.tofu.datasets.qa", "locuslab/TOFU"),
        ["config key 'hub.tofu.datasets.qa'", "one of: muse, tofu, retain_logs, wmdp"],
    ),
    (
        "hub id without owner",
        _set("hub.wmdp.models.original.repo", "zephyr-7b-beta"),
        [
            "config key 'hub.wmdp.models.original.repo': 'zephyr-7b-beta' is not allowed: "
            "must be a Hugging Face hub id, owner/name (e.g. muse-bench/MUSE-News)"
        ],
    ),
    (
        "unknown model role",
        _set("hub.wmdp.models.base", {"repo": "a/b"}),
        ["config key 'hub.wmdp.models.base'", "one of: target, retrain, full"],
    ),
    (
        "built model with general replay",
        _set("hub.wmdp.models.original", {"build_from": "mistralai/Mistral-7B-v0.1"}),
        [
            "config key 'models.finetune.replay_general': 0.25",
            "must be 0 when a model is built from a hub base (hub.wmdp.models.original",
        ],
    ),
    (
        "bio topic without the gated file",
        _delete("wmdp.bio_forget_file"),
        ["config key 'wmdp.bio_forget_file' is missing", "leave bio out of wmdp.topics"],
    ),
    (
        "misspelt model key",
        _set("hub.wmdp.models.original", {"repo": "a/b", "tokeniser": "c/d"}),
        ["config key 'hub.wmdp.models.original.tokeniser' is not a known key", "tokenizer"],
    ),
    (
        "hub source without a hub section",
        _delete("hub"),
        ["config key 'hub' is missing: source 'hub' downloads"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [pytest.param(mutate, fragments, id=name) for name, mutate, fragments in HUB_BAD_CONFIGS],
)
def test_bad_hub_config_is_rejected_with_a_useful_message(
    paper_config: dict, schema_path: Path, mutate: Mutation, fragments: list[str]
) -> None:
    config = copy.deepcopy(paper_config)
    mutate(config)
    message = problems_of(config, schema_path)
    for fragment in fragments:
        assert fragment in message


def test_the_paper_attacks_nothing_and_its_robustness_overlay_validates(
    paper_config: dict, schema_path: Path
) -> None:
    from snakemake.utils import update_config

    from bilevel_unlearning.runs import attack_names, attacked_benchmarks, attacked_rows

    assert attacked_benchmarks(paper_config) == []
    # as `snakemake --configfile config/paper.yaml config/paper_robustness.yaml` merges them:
    # the files first, in order, then the result over config/config.yaml
    overlay = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    update_config(overlay, yaml.safe_load((REPO / "config" / "paper_robustness.yaml").read_text()))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, overlay)
    config = validate_config(config, schema_path)
    assert config["robustness"]["benchmarks"]["muse_news"]["methods"] is None
    assert sorted(attacked_benchmarks(config)) == ["muse_news", "tofu", "wmdp"]
    relearn_muse = ["relearn_s100", "relearn_s125", "relearn_s150"]
    heldout_muse = [name.replace("relearn", "relearn_heldout") for name in relearn_muse]
    quantize = ["quantize_int4", "quantize_int8"]
    assert attack_names(config, "muse_news") == [*relearn_muse, *heldout_muse, *quantize]
    assert attack_names(config, "wmdp") == ["relearn_s15", "relearn_heldout_s15", *quantize]
    rows = [row for row, _ in attacked_rows(config, "muse_news")]
    assert rows == ["target", "retrain", *config["unlearn"]["muse_news"]["methods"]]


@pytest.mark.parametrize(
    ("robustness", "message"),
    [
        ({"benchmarks": {"tofu": {"methods": ["rmu"]}}}, "only a method that unlearn.tofu"),
        ({"benchmarks": {"tofu": {"splits": ["forget01"]}}}, "not a configured split"),
        ({"quantize": {"bits": [5], "group_size": 32}}, "bits"),
        (
            {"relearn": {"steps": [0], "learning_rate": 1, "batch_size": 1, "max_length": 8}},
            "steps",
        ),
    ],
)
def test_bad_robustness_config_names_the_key(
    default_config: dict, schema_path: Path, robustness: dict, message: str
) -> None:
    from snakemake.utils import update_config

    config = copy.deepcopy(default_config)
    update_config(config, {"robustness": robustness})
    with pytest.raises(ConfigError, match=message):
        validate_config(config, schema_path)
