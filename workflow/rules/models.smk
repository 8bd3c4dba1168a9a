# Models stage: a tokenizer and a base model trained here, then each benchmark's target and
# oracle fine-tuned from the base (MUSE's recipe: target on forget + retain, retrain on retain).
# Under source hub the targets and oracles are downloaded (download.smk), except those with
# `build_from`: the same finetune_model rule fine-tunes them from the downloaded base model
# (BUILT: models.recipes.built_models).
if MINIATURE:

    rule train_tokenizer:
        input:
            [data_files(b) for b in [GENERAL, *BENCHMARKS]],
        output:
            directory(f"{RESULTS}/general/models/tokenizer"),
        log:
            f"{RESULTS}/logs/models/tokenizer.log",
        benchmark:
            f"{RESULTS}/benchmarks/models/tokenizer.tsv"
        conda:
            ENV
        params:
            seed=SEED,
            texts=lambda wildcards, input: [f for f in input if f.endswith(".jsonl")],
            vocab_size=config["models"]["tokenizer"]["vocab_size"],
        shell:
            "python -m bilevel_unlearning.cli train-tokenizer --texts {params.texts}"
            " --vocab-size {params.vocab_size} --seed {params.seed} --out {output} > {log} 2>&1"

    rule pretrain_base:
        input:
            tokenizer=rules.train_tokenizer.output,
            corpus=f"{RESULTS}/general/data/corpus.jsonl",
        output:
            directory(f"{RESULTS}/general/models/base"),
        log:
            f"{RESULTS}/logs/models/base.log",
        benchmark:
            f"{RESULTS}/benchmarks/models/base.tsv"
        conda:
            ENV
        threads: config["threads"]["pretrain"]
        params:
            numerics=numerics_args("pretrain"),
            seed=SEED,
            settings=as_json(
                {
                    **config["models"]["pretrain"],
                    "architecture": config["models"]["architecture"],
                }
            ),
        shell:
            "python -m bilevel_unlearning.cli pretrain --tokenizer {input.tokenizer}"
            " --corpus {input.corpus} --settings '{params.settings}' --seed {params.seed}"
            " {params.numerics} --out {output} > {log} 2>&1"


# The miniature replays its general corpus while fine-tuning; a hub base model has none.
# Started as the unlearning jobs are: one process, or one per GPU under accelerate (DDP, or
# FSDP2 for a 7B base), in the config's precision.
FINETUNE_SHELL = (
    "{params.launcher} bilevel_unlearning.cli finetune --benchmark {wildcards.benchmark}"
    " --role {wildcards.role} --base {input.base} --data {params.data}"
    + (" --corpus {input.corpus}" if MINIATURE else "")
    + " --settings '{params.settings}' --seed {params.seed}"
    " --precision {params.precision} --strategy {params.strategy}"
    " {params.numerics} --out {output} > {log} 2>&1"
)


if MINIATURE or BUILT:

    rule finetune_model:
        input:
            base=(
                rules.pretrain_base.output
                if MINIATURE
                else lambda w: BUILT[(w.benchmark, w.role)]
            ),
            corpus=f"{RESULTS}/general/data/corpus.jsonl" if MINIATURE else [],
            sources=lambda w: [
                f"{RESULTS}/{w.benchmark}/data/{s}"
                for s in role_sources(w.benchmark, w.role)
            ],
        output:
            directory(f"{RESULTS}/{{benchmark}}/models/{{role}}"),
        log:
            f"{RESULTS}/logs/models/{{benchmark}}_{{role}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/models/{{benchmark}}_{{role}}.tsv"
        wildcard_constraints:
            benchmark="|".join(BENCHMARKS) if MINIATURE else built_pattern(BUILT),
            role="target|retrain|full|retain[0-9]+|original",
        conda:
            ENV
        threads: config["threads"]["default"]
        resources:
            # sized for the miniature on a CPU; profiles set GPUs and memory (finetune_model)
            gpus=0,
            mem_mb=4000,
        params:
            numerics=numerics_args("default"),
            seed=SEED,
            precision=config["precision"],
            launcher=lambda w, resources: launcher(resources.gpus),
            strategy=lambda w, resources: strategy(
                w.benchmark, resources.gpus, built_from(w)
            ),
            settings=lambda w: as_json(
                {**config["models"]["finetune"], **chat_settings(config)}
                if bench(w.benchmark).chat_qa
                else config["models"]["finetune"]
            ),
            data=lambda w: f"{RESULTS}/{w.benchmark}/data",
        shell:
            FINETUNE_SHELL


rule models:
    input:
        [model_dirs(b) for b in BENCHMARKS],
