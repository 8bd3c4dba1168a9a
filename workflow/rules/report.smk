# Paper outputs: tables T1-T3 and figures F1-F4 under paper_figures/ (and beyond the paper: S1,
# the MUSE MIA suite; T4 and F5, robustness to attacks), each from result files
# only. One rule per table and figure, with its own plotting module as an input, so editing
# one figure's code reruns that figure alone: `snakemake paper_figures/figure_2_gamma.pdf`.
FIGURES = config.get("figures", {})
ALL_METHODS = list(config["methods"])


# The paper tables, each over the configured benchmarks of its family (metric_catalog), each
# reading the (row, epoch) evaluations runs.table_rows names.
TABLES = {}
for _name, (_family, _category) in PAPER_TABLES.items():
    _members = [b for b in BENCHMARKS if family(b) == _family]
    if _members:
        TABLES[_name] = (table_evals(_members), table_settings(_members), _category)
# Robustness (beyond the paper): every attacked row without attack and after each attack.
ROBUSTNESS = {
    "rows": {b: attacked_rows(config, b) for b in ATTACKED},
    "references": {b: list(reference_models(config, b)) for b in ATTACKED},
    "topics": WMDP_TOPICS,
}


if ATTACKED:
    TABLES["table_4_robustness"] = (
        robustness_inputs(("relearn", "quantize")),
        {**ROBUSTNESS, "attacks": ATTACKS},
        "Robustness",
    )

for _name, (_inputs, _settings, _category) in TABLES.items():

    rule:
        name:
            _name
        input:
            results=_inputs,
            code=report_code(),
        output:
            csv=report(
                f"paper_figures/{_name}.csv",
                caption=f"../report/{_name}.rst",
                category=_category,
            ),
            markdown=f"paper_figures/{_name}.md",
            latex=f"paper_figures/{_name}.tex",
        log:
            f"{RESULTS}/logs/report/{_name}.log",
        conda:
            ENV
        params:
            name=_name,
            settings=as_json(_settings),
            out=lambda w, output: str(Path(output[0]).with_suffix("")),
        shell:
            "python -m bilevel_unlearning.cli report --table {params.name}"
            " --inputs {input.results} --settings '{params.settings}'"
            " --out {params.out} > {log} 2>&1"


FIGURE_JOBS = {}
_geometry = FIGURES.get("geometry")
if _geometry and _geometry["benchmark"] in BENCHMARKS:
    FIGURE_JOBS["figure_1_geometry"] = (
        [
            f"{RESULTS}/{_geometry['benchmark']}/unlearn/{m}/train_log.jsonl"
            for m in _geometry["methods"]
        ],
        {"methods": _geometry["methods"]},
        ("fig_geometry.py",),
        "Gradient geometry",
    )
_ablation = FIGURES.get("ablation")
if _ablation in BENCHMARKS and sweep_points(config, _ablation):
    _points = sweep_points(config, _ablation)
    _inputs = reference_evals(_ablation) + run_evals(
        _ablation, sorted({run for _, _, run in _points}), [table_epoch(_ablation)]
    )
    _settings = {
        "benchmark": _ablation,
        "epoch": table_epoch(_ablation),
        "points": _points,
    }
    FIGURE_JOBS["figure_2_gamma"] = (_inputs, _settings, ("fig_gamma.py",), "Ablation")
    FIGURE_JOBS["figure_3_tradeoff"] = (
        _inputs,
        _settings,
        ("fig_gamma.py", "fig_tradeoff.py"),
        "Ablation",
    )
_trajectories = FIGURES.get("trajectories")
if _trajectories in BENCHMARKS:
    _epochs = config["evaluate"][_trajectories]["epochs"]
    _methods = config["unlearn"][_trajectories]["methods"]
    # a benchmark with one row per forget split (TOFU) is shown on its first split
    _suffix = row_suffix(_trajectories)
    FIGURE_JOBS["figure_4_trajectories"] = (
        reference_evals(_trajectories)
        + run_evals(_trajectories, [m + _suffix for m in _methods], _epochs),
        {
            "benchmark": _trajectories,
            "methods": _methods,
            "epochs": sorted(_epochs),
            **({"suffix": _suffix} if _suffix else {}),
        },
        ("fig_trajectories.py",),
        "Trajectories",
    )
if any(attack_kind(a) == "relearn" for a in ATTACKS):
    FIGURE_JOBS["figure_5_relearning"] = (
        robustness_inputs(("relearn",)),
        {**ROBUSTNESS, "steps": {b: relearn_steps(config, b) for b in ATTACKED}},
        ("fig_relearning.py",),
        "Robustness",
    )

for _name, (_inputs, _settings, _modules, _category) in FIGURE_JOBS.items():

    rule:
        name:
            _name
        input:
            results=_inputs,
            code=report_code(*_modules),
        output:
            pdf=f"paper_figures/{_name}.pdf",
            png=report(
                f"paper_figures/{_name}.png",
                caption=f"../report/{_name}.rst",
                category=_category,
            ),
        log:
            f"{RESULTS}/logs/report/{_name}.log",
        conda:
            ENV
        params:
            name=_name,
            settings=as_json({**_settings, "all_methods": ALL_METHODS}),
            out=lambda w, output: str(Path(output[0]).with_suffix("")),
        shell:
            "python -m bilevel_unlearning.cli report --figure {params.name}"
            " --inputs {input.results} --settings '{params.settings}'"
            " --out {params.out} > {log} 2>&1"


# Two parts, each with its manifest and its comparison with the expected tables: the paper's
# outputs (rule paper_outputs, part of `all`) and, beyond the paper, the robustness attacks
# (rule robustness, its own target: its ~70 extra jobs would double the default run).
ROBUSTNESS_OUTPUTS = ("table_4_robustness", "figure_5_relearning")
PARTS = {
    part: {
        "tables": [
            t for t in TABLES if (t in ROBUSTNESS_OUTPUTS) == (part == "robustness")
        ],
        "figures": [
            f
            for f in FIGURE_JOBS
            if (f in ROBUSTNESS_OUTPUTS) == (part == "robustness")
        ],
    }
    for part in ("paper", "robustness")
}
SUFFIX = {"paper": "", "robustness": "_robustness"}


PAPER_OUTPUTS = part_outputs("paper")
USED_RESULTS = part_results("paper")
CHECKS = {"paper": [], "robustness": []}

for _part, _suffix in SUFFIX.items():
    if not part_outputs(_part):
        continue

    rule:
        name:
            f"manifest{_suffix}"
        input:
            outputs=part_outputs(_part),
            results=part_results(_part),
        output:
            f"paper_figures/MANIFEST{_suffix}.json",
        log:
            f"{RESULTS}/logs/report/manifest{_suffix}.log",
        conda:
            ENV
        shell:
            "python -m bilevel_unlearning.cli manifest --outputs {input.outputs}"
            " --results {input.results} --out {output} > {log} 2>&1"


# Read-only: the manifests are parameters, not inputs, so `snakemake verify` runs no other
# job (a stale workspace is reported, not rebuilt); it writes its own log and nothing else.
rule verify:
    log:
        f"{RESULTS}/logs/report/verify.log",
    conda:
        ENV
    params:
        manifests=written_manifests(),
    shell:
        "python -m bilevel_unlearning.cli verify --manifest {params.manifests} 2>&1 | tee {log}"


if config.get("expected_tables") and TABLES:
    if not Path(f"config/expected/{config['expected_tables']}").is_dir():
        raise ValueError(
            f"config key 'expected_tables': {config['expected_tables']!r} names no folder "
            f"config/expected/{config['expected_tables']}/; set it to null, or copy a run's "
            "paper_figures/table_*.csv there to compare later runs with it"
        )

    for _part, _suffix in SUFFIX.items():
        if not PARTS[_part]["tables"]:
            continue
        CHECKS[_part].append(f"paper_figures/expected_comparison{_suffix}.md")

        rule:
            name:
                f"compare_expected{_suffix}"
            input:
                tables=[f"paper_figures/{t}.csv" for t in PARTS[_part]["tables"]],
                expected=[
                    f"config/expected/{config['expected_tables']}/{t}.csv"
                    for t in PARTS[_part]["tables"]
                ],
            output:
                markdown=f"paper_figures/expected_comparison{_suffix}.md",
                cells=f"paper_figures/expected_comparison{_suffix}.json",
            log:
                f"{RESULTS}/logs/report/expected_comparison{_suffix}.log",
            conda:
                ENV
            params:
                expected=lambda w, input: str(Path(input.expected[0]).parent),
            shell:
                "python -m bilevel_unlearning.cli compare --inputs {input.tables}"
                " --expected {params.expected} --out {output.markdown} 2>&1 | tee {log}"


if config["source"] == "hub":
    CHECKS["paper"].append("paper_figures/reference_comparison.md")

    rule compare_reference:
        input:
            results=USED_RESULTS,
            reference="config/reference_results.yaml",
        output:
            "paper_figures/reference_comparison.md",
        log:
            f"{RESULTS}/logs/report/reference_comparison.log",
        conda:
            ENV
        params:
            epochs=as_json({b: table_epoch(b) for b in BENCHMARKS}),
        shell:
            "python -m bilevel_unlearning.cli compare"
            " --inputs {input.results} --reference {input.reference}"
            " --epochs '{params.epochs}' --out {output} > {log} 2>&1"


rule paper_outputs:
    input:
        PAPER_OUTPUTS,
        "paper_figures/MANIFEST.json",
        CHECKS["paper"],


# Beyond the paper, its own target: `snakemake robustness` (make robustness) attacks the
# configured rows, evaluates them again and writes T4, F5, their manifest and comparison.
rule robustness:
    input:
        part_outputs("robustness"),
        "paper_figures/MANIFEST_robustness.json" if part_outputs("robustness") else [],
        CHECKS["robustness"],
