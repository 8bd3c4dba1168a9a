# Sanity report: target vs oracle on forget and retain probes, before any unlearning.


rule sanity_benchmark:
    input:
        data=lambda w: data_files(w.benchmark),
        models=lambda w: model_dirs(w.benchmark),
        base=rules.pretrain_base.output,
    output:
        f"{RESULTS}/{{benchmark}}/sanity.json",
    log:
        f"{RESULTS}/logs/sanity/{{benchmark}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sanity/{{benchmark}}.tsv"
    wildcard_constraints:
        benchmark="|".join(BENCHMARKS),
    conda:
        ENV
    threads: 1
    params:
        settings=lambda w, input: as_json(
            {
                **config[w.benchmark.split("_")[0]],
                "base": str(input.base),
            }
        ),
        data=lambda w: f"{RESULTS}/{w.benchmark}/data",
        models=lambda w: f"{RESULTS}/{w.benchmark}/models",
    shell:
        "python -m bilevel_unlearning.cli sanity --benchmark {wildcards.benchmark}"
        " --data {params.data} --models {params.models} --settings '{params.settings}'"
        " --threads {threads} --out {output} > {log} 2>&1"


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
