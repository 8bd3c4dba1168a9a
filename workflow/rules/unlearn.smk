# Unlearning stage: one job per (benchmark, run); a run is a method (and, on TOFU, a forget
# split). Each job writes one Hugging Face folder per epoch and the per-step log.


for _benchmark in BENCHMARKS:
    for _run, (_method, _settings) in unlearn_runs(_benchmark).items():

        rule:
            name:
                f"unlearn_{_benchmark}_{_run.replace('-', '_')}"
            input:
                model=start_model(_benchmark),
                data=data_files(_benchmark),
            output:
                unlearn_outputs(_benchmark, _run),
            log:
                f"{RESULTS}/logs/unlearn/{_benchmark}_{_run}.log",
            benchmark:
                f"{RESULTS}/benchmarks/unlearn/{_benchmark}_{_run}.tsv"
            conda:
                ENV
            threads: 1
            resources:
                # sized for the miniature on a CPU; profiles set GPUs and memory per rule
                gpus=0,
                mem_mb=4000,
            params:
                seed=SEED,
                benchmark=_benchmark,
                precision=config["precision"],
                method=as_json(config["methods"][_method]),
                settings=as_json(_settings),
                launcher=lambda w, resources: launcher(resources.gpus),
                data=lambda w, input: ancestor_named(input.data[0], "data"),
                out=lambda w, output: str(Path(output[-1]).parent),
            shell:
                "{params.launcher} bilevel_unlearning.cli unlearn --benchmark {params.benchmark}"
                " --method '{params.method}' --settings '{params.settings}'"
                " --model {input.model} --data {params.data} --seed {params.seed}"
                " --precision {params.precision} --threads {threads} --out {params.out}"
                " > {log} 2>&1"


rule unlearn:
    input:
        [unlearn_files(b, run) for b in BENCHMARKS for run in unlearn_runs(b)],
