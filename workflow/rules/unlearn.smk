# Unlearning stage: one job per (benchmark, run); a run is a method (on TOFU, per forget split;
# on a sweep, per gamma). Each job writes one Hugging Face folder per epoch and the step log.


# One rule per benchmark: the epoch count (hence the outputs) and the resources differ by
# benchmark, and profiles size GPU jobs by rule name (unlearn_muse_news, unlearn_tofu, ...).
for _benchmark in BENCHMARKS:
    _epochs = range(1, config["unlearn"][_benchmark]["epochs"] + 1)

    rule:
        name:
            f"unlearn_{_benchmark}"
        input:
            model=start_model(_benchmark),
            data=data_files(_benchmark),
        output:
            [
                directory(f"{RESULTS}/{_benchmark}/unlearn/{{run}}/epoch_{e}")
                for e in _epochs
            ],
            f"{RESULTS}/{_benchmark}/unlearn/{{run}}/train_log.jsonl",
        log:
            f"{RESULTS}/logs/unlearn/{_benchmark}/{{run}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/unlearn/{_benchmark}/{{run}}.tsv"
        wildcard_constraints:
            run=one_of(runs_of(_benchmark)),
        conda:
            ENV
        threads: config["threads"]["default"]
        resources:
            # sized for the miniature on a CPU; profiles set GPUs and memory per rule
            gpus=0,
            mem_mb=4000,
            # minutes (sbatch -t under the slurm profile), from the GPU plan
            runtime=lambda w, attempt, benchmark=_benchmark: (
                unlearn_time_limits(benchmark)[w.run] * attempt
            ),
        params:
            numerics=numerics_args("default"),
            seed=SEED,
            benchmark=_benchmark,
            precision=config["precision"],
            method=lambda w, benchmark=_benchmark: as_json(
                runs_of(benchmark)[w.run].params
            ),
            settings=lambda w, benchmark=_benchmark: as_json(
                runs_of(benchmark)[w.run].settings
            ),
            launcher=lambda w, resources: launcher(resources.gpus),
            strategy=lambda w, resources, benchmark=_benchmark: strategy(
                benchmark, resources.gpus
            ),
            data=lambda w, input: ancestor_named(input.data[0], "data"),
            out=lambda w, output: str(Path(output[-1]).parent),
        shell:
            "{params.launcher} bilevel_unlearning.cli unlearn --benchmark {params.benchmark}"
            " --method '{params.method}' --settings '{params.settings}'"
            " --model {input.model} --data {params.data} --seed {params.seed}"
            " --precision {params.precision} --strategy {params.strategy}"
            " {params.numerics} --out {params.out}"
            " > {log} 2>&1"


rule unlearn:
    input:
        [unlearn_files(b, run) for b in BENCHMARKS for run in runs_of(b)],
