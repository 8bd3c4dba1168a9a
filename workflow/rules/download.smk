# Download stage (source: hub): the real benchmarks and models. The only rules that reach the
# hub: local rules (login nodes have the network, compute nodes may not), with retries and a
# clear message for gated data inside the library (bilevel_unlearning.data.hub). Everything
# after reads the local files these rules write, in the layout the miniature uses; the WMDP
# download also writes the lm-eval task files that evaluation runs (no hub access there).
#
# The token: export HF_TOKEN in the shell that runs Snakemake; local rules inherit the
# environment. It is never a config value, a rule parameter or an `envvars:` entry (public
# repositories need no token, so it is not required).
for _benchmark in [] if MINIATURE else BENCHMARKS:

    rule:
        name:
            f"download_data_{_benchmark}"
        input:
            bio=bio_forget_input if bench(_benchmark).topics else [],
        output:
            data_files(_benchmark),
        log:
            f"{RESULTS}/logs/download/{_benchmark}-data.log",
        localrule: True
        conda:
            ENV
        params:
            benchmark=_benchmark,
            datasets=as_json(HUB[_benchmark].get("datasets", {})),
            topics=" ".join(
                WMDP_TOPICS if bench(_benchmark).topics else ["bio", "cyber"]
            ),
            bio=(
                f"--bio-forget-file {config['wmdp']['bio_forget_file']}"
                if bench(_benchmark).topics and "bio" in WMDP_TOPICS
                else ""
            ),
            out=lambda w, output: ancestor_named(output[0], "data"),
            mirror=MIRROR_ARG,
        shell:
            "python -m bilevel_unlearning.cli download --what data"
            " --benchmark {params.benchmark} --datasets '{params.datasets}'"
            " --topics {params.topics} {params.bio} {params.mirror} --out {params.out}"
            " > {log} 2>&1"

    for _role, _model in hub_models(config, _benchmark).items():
        if not _model.get("repo"):
            continue  # built from a base model (models.smk: finetune_model)

        rule:
            name:
                f"download_model_{_benchmark}_{_role}"
            output:
                directory(f"{RESULTS}/{_benchmark}/models/{_role}"),
            log:
                f"{RESULTS}/logs/download/{_benchmark}-{_role}.log",
            localrule: True
            conda:
                ENV
            params:
                repo=_model["repo"],
                revision=(
                    f"--revision {_model['revision']}"
                    if _model.get("revision")
                    else ""
                ),
                tokenizer=(
                    f"--tokenizer {_model['tokenizer']}"
                    if _model.get("tokenizer")
                    else ""
                ),
                mirror=MIRROR_ARG,
            shell:
                "python -m bilevel_unlearning.cli download --what model --repo {params.repo}"
                " {params.revision} {params.tokenizer} {params.mirror} --out {output}"
                " > {log} 2>&1"


# TOFU's forget-quality reference as the paper took it (tofu.forget_quality_reference:
# retain_logs): open-unlearning's evaluation log of the retain model of each forget split.
if not MINIATURE and "tofu" in BENCHMARKS:

    rule download_retain_log:
        output:
            f"{RESULTS}/tofu/retain_logs/{{split}}.json",
        log:
            f"{RESULTS}/logs/download/tofu-retain-log-{{split}}.log",
        wildcard_constraints:
            split=one_of(config["tofu"]["forget_splits"]),
        localrule: True
        conda:
            ENV
        params:
            repo=dataset_roles("tofu", HUB["tofu"].get("datasets"))["retain_logs"],
            path=lambda w: retain_log_path(
                HUB["tofu"]["models"][TOFU_RETAIN_OF[w.split]]["repo"]
            ),
            mirror=MIRROR_ARG,
        shell:
            "python -m bilevel_unlearning.cli download --what retain-log --repo {params.repo}"
            " --path {params.path} {params.mirror} --out {output} > {log} 2>&1"


# The base models that `build_from` entries name, each downloaded once.
BASE_MODELS = base_models(config)

for _folder, _model in BASE_MODELS.items():

    rule:
        name:
            f"download_base_{re.sub('[^0-9A-Za-z_]', '_', Path(_folder).name)}"
        output:
            directory(_folder),
        log:
            f"{RESULTS}/logs/download/base-{Path(_folder).name}.log",
        localrule: True
        conda:
            ENV
        params:
            repo=_model["build_from"],
            revision=(
                f"--revision {_model['revision']}" if _model.get("revision") else ""
            ),
            tokenizer=(
                f"--tokenizer {_model['tokenizer']}" if _model.get("tokenizer") else ""
            ),
            mirror=MIRROR_ARG,
        shell:
            "python -m bilevel_unlearning.cli download --what model --repo {params.repo}"
            " {params.revision} {params.tokenizer} {params.mirror} --out {output}"
            " > {log} 2>&1"


if not MINIATURE:

    # Everything the hub provides, and nothing that needs a GPU: `snakemake download` on a
    # login node, then the rest on the cluster.
    rule download:
        input:
            [data_files(b) for b in BENCHMARKS],
            [
                f"{RESULTS}/{b}/models/{role}"
                for b in BENCHMARKS
                for role, model in hub_models(config, b).items()
                if model.get("repo")
            ],
            list(BASE_MODELS),
