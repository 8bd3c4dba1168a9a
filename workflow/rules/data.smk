# Data stage: the miniature benchmarks, generated from the seed in the benchmarks' own layouts
# (the layout a hub download writes too, so every later rule reads both alike). Under source
# hub the same files come from the download rules (download.smk).
DATA_BENCHMARKS = [GENERAL, *BENCHMARKS] if MINIATURE else BENCHMARKS

for _benchmark in DATA_BENCHMARKS if MINIATURE else []:

    rule:
        name:
            f"generate_{_benchmark}"
        output:
            data_files(_benchmark),
        log:
            f"{RESULTS}/logs/data/{_benchmark}.log",
        benchmark:
            f"{RESULTS}/benchmarks/data/{_benchmark}.tsv"
        conda:
            ENV
        params:
            seed=SEED,
            benchmark=_benchmark,
            sizes=as_json(config["miniature"]),
            out=lambda w, output: ancestor_named(output[0], "data"),
        shell:
            "python -m bilevel_unlearning.cli generate --benchmark {params.benchmark}"
            " --seed {params.seed} --sizes '{params.sizes}' --out {params.out} > {log} 2>&1"


rule data:
    input:
        [data_files(b) for b in DATA_BENCHMARKS],
