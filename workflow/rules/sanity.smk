# Sanity report: target vs oracle on forget and retain probes, before any unlearning.


# One rule per benchmark, so each job's params are plain values: Snakemake reruns a job when its
# params change, and it only compares params that are not functions.
for _benchmark in BENCHMARKS:

    rule:
        name:
            f"sanity_{_benchmark}"
        input:
            data=data_files(_benchmark),
            models=model_dirs(_benchmark),
            base=rules.pretrain_base.output,
        output:
            f"{RESULTS}/{_benchmark}/sanity.json",
        log:
            f"{RESULTS}/logs/sanity/{_benchmark}.log",
        benchmark:
            f"{RESULTS}/benchmarks/sanity/{_benchmark}.tsv"
        conda:
            ENV
        threads: config["threads"]["default"]
        params:
            numerics=numerics_args("default"),
            # sanity scores of another form (metric_catalog.RESULT_FORMAT) run again
            result_format=RESULT_FORMAT,
            benchmark=_benchmark,
            settings=as_json(config[family(_benchmark)]),
            data=lambda w, input: ancestor_named(input.data[0], "data"),
            models=lambda w, input: ancestor_named(input.models[0], "models"),
        shell:
            "python -m bilevel_unlearning.cli sanity --benchmark {params.benchmark}"
            " --data {params.data} --models {params.models} --base {input.base}"
            " --settings '{params.settings}' {params.numerics} --out {output} > {log} 2>&1"


rule sanity_report:
    input:
        expand(f"{RESULTS}/{{benchmark}}/sanity.json", benchmark=BENCHMARKS),
    output:
        json=f"{RESULTS}/sanity_report.json",
        markdown=f"{RESULTS}/sanity_report.md",
    log:
        f"{RESULTS}/logs/sanity/report.log",
    conda:
        ENV
    shell:
        "python -m bilevel_unlearning.cli sanity-report --inputs {input}"
        " --json {output.json} --markdown {output.markdown} 2>&1 | tee {log}"
