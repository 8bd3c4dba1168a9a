# Robustness stage (beyond the paper): an attacked copy of a row's model, which the evaluate
# rules then read like any other model. One job per (benchmark, row, attack, epoch); which rows
# and attacks is the config's `robustness` section (runs.attacked_rows, runs.attack_names).


# The held-out split of a benchmark's forget facts (per TOFU forget split): which entities the
# attacker relearns, which evaluation items it is scored on. Made once, from the data and seed;
# every held-out attack of the benchmark and the report read the same file.
rule heldout_split:
    input:
        data=lambda w: data_files(w.benchmark),
    output:
        f"{RESULTS}/{{benchmark}}/attack/heldout_split/{{part}}.json",
    log:
        f"{RESULTS}/logs/attack/{{benchmark}}/heldout_split_{{part}}.log",
    wildcard_constraints:
        benchmark=one_of(ATTACKED),
        part=r"forget|forget\d+",
    conda:
        ENV
    resources:
        gpus=0,
        mem_mb=1000,
    params:
        seed=SEED,
        settings=lambda w: as_json(heldout_settings(config, w.benchmark, w.part)),
        data=lambda w, input: ancestor_named(input.data[0], "data"),
    shell:
        "python -m bilevel_unlearning.cli heldout-split --benchmark {wildcards.benchmark}"
        " --data {params.data} --settings '{params.settings}' --seed {params.seed}"
        " --out {output} > {log} 2>&1"


rule attack_model:
    input:
        model=lambda w: evaluated_model(w.benchmark, w.row, w.epoch),
        data=lambda w: data_files(w.benchmark),
        heldout_split=heldout_split_input,
    output:
        directory(f"{RESULTS}/{{benchmark}}/attack/{{row}}/{{attack}}/epoch_{{epoch}}"),
    log:
        f"{RESULTS}/logs/attack/{{benchmark}}/{{row}}_{{attack}}_epoch_{{epoch}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/attack/{{benchmark}}/{{row}}_{{attack}}_epoch_{{epoch}}.tsv"
    wildcard_constraints:
        benchmark=one_of(ATTACKED),
        row=one_of({row for b in ATTACKED for row, _ in attacked_rows(config, b)}),
        attack=one_of(ATTACKS),
        epoch=r"\d+",
    conda:
        ENV
    threads: config["threads"]["default"]
    resources:
        gpus=0,
        mem_mb=4000,
    params:
        numerics=numerics_args("default"),
        seed=SEED,
        precision=config["precision"],
        settings=lambda w: as_json(
            attack_settings(config, w.benchmark, w.attack, w.row)
        ),
        data=lambda w, input: ancestor_named(input.data[0], "data"),
        heldout=lambda w, input: (
            f"--heldout-split {input.heldout_split}" if input.heldout_split else ""
        ),
    shell:
        "python -m bilevel_unlearning.cli attack --benchmark {wildcards.benchmark}"
        " --attack {wildcards.attack} --model {input.model} --data {params.data}"
        " --settings '{params.settings}' --seed {params.seed} {params.heldout}"
        " --precision {params.precision} {params.numerics} --out {output} > {log} 2>&1"
