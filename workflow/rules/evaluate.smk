# Evaluation stage: one job per (benchmark, row, attack, epoch). A row is a run at a saved
# epoch, or a reference model (start model, oracle) at epoch 0; attack `none` is the model
# itself, any other the attacked copy of it (attack.smk). The unattacked oracle is evaluated
# first: PrivLeak needs its AUC and TOFU's forget_quality its per-item truth ratios.


for _benchmark in BENCHMARKS:

    rule:
        name:
            f"evaluate_{_benchmark}"
        input:
            model=lambda w, benchmark=_benchmark: evaluated_model(
                benchmark, w.row, w.epoch, w.attack
            ),
            data=data_files(_benchmark),
            reference=lambda w, benchmark=_benchmark: (
                reference_eval(benchmark, w.row, w.attack) or []
            ),
        output:
            f"{RESULTS}/{_benchmark}/eval/{{row}}/{{attack}}/epoch_{{epoch}}.json",
        log:
            f"{RESULTS}/logs/evaluate/{_benchmark}/{{row}}_{{attack}}_epoch_{{epoch}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate/{_benchmark}/{{row}}_{{attack}}_epoch_{{epoch}}.tsv"
        wildcard_constraints:
            row=one_of({row for row, _ in evaluations(config, _benchmark)}),
            attack=one_of([NO_ATTACK, *ATTACKS]),
            epoch=r"\d+",
        conda:
            ENV
        threads: config["threads"]["default"]
        resources:
            gpus=0,
            mem_mb=4000,
        params:
            numerics=numerics_args("default"),
            # evaluations of another form (metric_catalog.RESULT_FORMAT) run again
            result_format=RESULT_FORMAT,
            seed=SEED,
            benchmark=_benchmark,
            precision=config["precision"],
            source=config["source"],
            settings=lambda w, benchmark=_benchmark: as_json(
                evaluation_settings(config, benchmark, w.row)
            ),
            data=lambda w, input: ancestor_named(input.data[0], "data"),
            reference=lambda w, input: (
                f"--reference {input.reference}" if input.reference else ""
            ),
        shell:
            "python -m bilevel_unlearning.cli evaluate --benchmark {params.benchmark}"
            " --run {wildcards.row} --epoch {wildcards.epoch} --model {input.model}"
            " --data {params.data} --settings '{params.settings}' {params.reference}"
            " --seed {params.seed} --precision {params.precision} --source {params.source}"
            " --attack {wildcards.attack} {params.numerics} --out {output} > {log} 2>&1"


# Every configured epoch of every run (`snakemake all_epochs`): `all` requests only the
# evaluations the tables, figures and manifest read (report.smk), less than half on the paper
# config.
rule all_epochs:
    input:
        [eval_files(b) for b in BENCHMARKS],
