# Paper outputs: tables T1-T3 and figures F1-F4 under paper_figures/ (and beyond the paper: S1,
# the MUSE MIA suite; T4 and F5, robustness to attacks), each from result files
# only. One rule per table and figure, with its own plotting module as an input, so editing
# one figure's code reruns that figure alone: `snakemake paper_figures/figure_2_gamma.pdf`.
# Which result files and settings feed each table and figure: bilevel_unlearning.report.jobs
# (pure functions of the config, unit-tested), one rule per job below.
TABLES = table_jobs(config)
FIGURE_JOBS = figure_jobs(config)

for _name, _job in TABLES.items():

    rule:
        name:
            _name
        input:
            results=_job.inputs,
            code=report_code(*_job.modules),
        output:
            csv=report(
                f"paper_figures/{_name}.csv",
                caption=f"../report/{_name}.rst",
                category=_job.category,
            ),
            markdown=f"paper_figures/{_name}.md",
            latex=f"paper_figures/{_name}.tex",
        log:
            f"{RESULTS}/logs/report/{_name}.log",
        conda:
            ENV
        params:
            name=_name,
            settings=as_json(_job.settings),
            out=lambda w, output: str(Path(output[0]).with_suffix("")),
        shell:
            "python -m bilevel_unlearning.cli report --table {params.name}"
            " --inputs {input.results} --settings '{params.settings}'"
            " --out {params.out} > {log} 2>&1"


for _name, _job in FIGURE_JOBS.items():

    rule:
        name:
            _name
        input:
            results=_job.inputs,
            code=report_code(*_job.modules),
        output:
            pdf=f"paper_figures/{_name}.pdf",
            png=report(
                f"paper_figures/{_name}.png",
                caption=f"../report/{_name}.rst",
                category=_job.category,
            ),
        log:
            f"{RESULTS}/logs/report/{_name}.log",
        conda:
            ENV
        params:
            name=_name,
            settings=as_json(_job.settings),
            out=lambda w, output: str(Path(output[0]).with_suffix("")),
        shell:
            "python -m bilevel_unlearning.cli report --figure {params.name}"
            " --inputs {input.results} --settings '{params.settings}'"
            " --out {params.out} > {log} 2>&1"


# Two parts, each with its manifest and its comparison with the expected tables: the paper's
# outputs (rule paper_outputs, part of `all`) and, beyond the paper, the robustness attacks
# (rule robustness, its own target: its ~70 extra jobs would double the default run).
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
        if not part_tables(TABLES, _part):
            continue
        CHECKS[_part].append(f"paper_figures/expected_comparison{_suffix}.md")

        rule:
            name:
                f"compare_expected{_suffix}"
            input:
                tables=[f"paper_figures/{t}.csv" for t in part_tables(TABLES, _part)],
                expected=[
                    f"config/expected/{config['expected_tables']}/{t}.csv"
                    for t in part_tables(TABLES, _part)
                ],
                # the seed bands (report.bands), where committed: new bands, a new comparison
                bands=committed_bands(part_tables(TABLES, _part)),
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


# The reproduction table: this run beside the numbers it should match (report.reproduction).
# The paper path: the published numbers of config/reference_results.yaml; the miniature: the
# committed expected tables, read from the expected-table comparison.
REPRODUCTION = "paper_figures/table_reproduction"
if config["source"] == "hub":
    CHECKS["paper"].append(f"{REPRODUCTION}.md")

    rule table_reproduction:
        input:
            results=evaluation_results(USED_RESULTS),
            reference="config/reference_results.yaml",
        output:
            csv=report(
                f"{REPRODUCTION}.csv",
                caption="../report/table_reproduction.rst",
                category="Reproduction",
            ),
            markdown=f"{REPRODUCTION}.md",
        log:
            f"{RESULTS}/logs/report/table_reproduction.log",
        conda:
            ENV
        params:
            epochs=as_json({b: table_epoch(config, b) for b in BENCHMARKS}),
            out=lambda w, output: str(Path(output.csv).with_suffix("")),
        shell:
            "python -m bilevel_unlearning.cli reproduction"
            " --inputs {input.results} --reference {input.reference}"
            " --epochs '{params.epochs}' --out {params.out} > {log} 2>&1"

elif "paper_figures/expected_comparison.md" in CHECKS["paper"]:
    CHECKS["paper"].append(f"{REPRODUCTION}.md")

    rule table_reproduction:
        input:
            comparison="paper_figures/expected_comparison.json",
        output:
            csv=report(
                f"{REPRODUCTION}.csv",
                caption="../report/table_reproduction.rst",
                category="Reproduction",
            ),
            markdown=f"{REPRODUCTION}.md",
        log:
            f"{RESULTS}/logs/report/table_reproduction.log",
        conda:
            ENV
        params:
            expected=config["expected_tables"],
            out=lambda w, output: str(Path(output.csv).with_suffix("")),
        shell:
            "python -m bilevel_unlearning.cli reproduction --comparison {input.comparison}"
            " --expected-name {params.expected} --out {params.out} > {log} 2>&1"


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
