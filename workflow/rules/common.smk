# Shared helpers: config validation (before any job starts), paths, job parameters. What a
# stage plans is a pure, tested function of the config in the library (runs, report.jobs,
# models.recipes, plan); what stays here is the glue that needs Snakemake's own objects
# (workflow, wildcards, the results folder). `snakemake --lint` asks that rule files define no
# functions, so the glue of every stage is kept in this one file, by section.
import functools
import hashlib
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

import bilevel_unlearning
from bilevel_unlearning.benchmarks import benchmark as bench
from bilevel_unlearning.config import check_config_files, validate_config
from bilevel_unlearning.data.hub import (
    GatedDataError,
    dataset_roles,
    hub_data_files,
    require_bio_forget_file,
    retain_log_path,
)
from bilevel_unlearning.data.layout import GENERAL, TOFU_RETAIN_OF, layout_files
from bilevel_unlearning.data.miniature import LM_EVAL_TASKS
from bilevel_unlearning.metric_catalog import RESULT_FORMAT
from bilevel_unlearning.report.jobs import (
    evaluation_results,
    figure_jobs,
    part_tables,
    table_jobs,
)
from bilevel_unlearning.report.jobs import part_outputs as _part_outputs
from bilevel_unlearning.report.jobs import part_results as _part_results
from bilevel_unlearning.models.recipes import (
    base_models,
    built_models,
    built_pattern,
    hub_models,
    model_roles,
    role_sources,
)
from bilevel_unlearning.runtime import launch_command, parallel_strategy
from bilevel_unlearning.runs import (
    NO_ATTACK,
    ORACLE_ROLE,
    HELDOUT_RELEARN,
    START_ROLE,
    attack_kind,
    attack_names,
    attack_settings,
    attacked_benchmarks,
    attacked_evaluations,
    attacked_rows,
    chat_settings,
    eval_path,
    evaluation_settings,
    evaluations,
    family,
    heldout_part,
    heldout_settings,
    heldout_split_path,
    oracle_row,
    reference_models,
    retain_log_file,
    table_epoch,
    unlearn_runs,
)

# config/config.yaml and every --configfile, read again by the project's loader (duplicate
# keys), then the merged config against the schema and the cross-field rules
check_config_files(workflow.configfiles)
validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))

RESULTS = config["results_dir"]
BENCHMARKS = config["benchmarks"]
SEED = config["seed"]
# miniature: data generated, models trained here. hub: data and models downloaded (download.smk),
# except models with `build_from`, fine-tuned here from a downloaded base (models.smk).
MINIATURE = config["source"] == "miniature"
HUB = {} if MINIATURE else config["hub"]
# a local folder in place of the hub (hub.mirror): the download rules pass it on
MIRROR_ARG = f"--mirror {HUB['mirror']}" if HUB.get("mirror") else ""
WMDP_TOPICS = config["wmdp"]["topics"]
# robustness: the attacks (relearn_s<N>, relearn_heldout_s<N>, quantize_int<b>) and the
# benchmarks they apply to
ATTACKS = attack_names(config)
ATTACKED = attacked_benchmarks(config)
ENV = "../../envs/bilevel-unlearning.yaml"
# Jobs run `python -m bilevel_unlearning.cli`: the interpreter Snakemake runs in (the project's
# .venv) comes first on PATH, unless --sdm conda activates the rule's environment in front of it.


envvars:
    "PATH",


_path = os.environ["PATH"]
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{_path}"
# Every result records the hash of the whole config it came from (not a param: a change
# elsewhere in the config must not rerun a job whose own settings did not change).
os.environ.update(
    BILEVEL_CONFIG_SHA256=hashlib.sha256(
        json.dumps(config, sort_keys=True).encode()
    ).hexdigest()
)


def numerics_args(stage):
    """A computing job's numerics flags: its thread count from the config (never --cores) and
    deterministic GPU kernels when asked (bilevel_unlearning.numerics)."""
    flags = f"--threads {config['threads'][stage]}"
    return flags + (" --deterministic" if config["deterministic"] else "")


def as_json(value):
    """A config section as a JSON job parameter: changing it reruns exactly the jobs using it."""
    return json.dumps(value, sort_keys=True)


def data_files(benchmark):
    """Every file the data stage writes for a benchmark (lm-eval task files included): the
    generator's (miniature), or the download's (hub: the chosen WMDP topics' files, the task
    files and provenance.json)."""
    if not MINIATURE:
        relative = hub_data_files(benchmark, WMDP_TOPICS)
        return [f"{RESULTS}/{benchmark}/data/{f}" for f in relative]
    files = [f"{RESULTS}/{benchmark}/data/{f}" for f in layout_files(benchmark)]
    if benchmark != GENERAL and bench(benchmark).topics:  # WMDP: lm-eval task files
        files += [f"{RESULTS}/{benchmark}/data/tasks/{t}.yaml" for t in LM_EVAL_TASKS]
    return files


def model_dirs(benchmark):
    return [f"{RESULTS}/{benchmark}/models/{r}" for r in model_roles(benchmark, config)]


# (benchmark, role) -> base model folder of every model fine-tuned here from a hub base
BUILT = built_models(config)


def ancestor_named(path, name):
    """The folder called `name` that holds `path`: a job's data or models folder from its files."""
    return str(next(p for p in Path(path).parents if p.name == name))


def runs_of(benchmark):
    """Run name -> Run (method, its parameters, the run's settings) of a benchmark."""
    return unlearn_runs(config, benchmark)


def one_of(names):
    """A wildcard constraint matching exactly these names."""
    return "|".join(re.escape(n) for n in names)


def unlearn_files(benchmark, run):
    """A run's epoch folders and its step log (plain paths, for inputs)."""
    folder = f"{RESULTS}/{benchmark}/unlearn/{run}"
    epochs = range(1, config["unlearn"][benchmark]["epochs"] + 1)
    return [f"{folder}/epoch_{e}" for e in epochs] + [f"{folder}/train_log.jsonl"]


def start_model(benchmark):
    return f"{RESULTS}/{benchmark}/models/{START_ROLE[family(benchmark)]}"


def evaluated_model(benchmark, row, epoch, attack=NO_ATTACK):
    """The folder a row's evaluation reads: a reference model, or a run's epoch checkpoint;
    after an attack, the attacked copy of it (attack.smk)."""
    if attack != NO_ATTACK:
        return attacked_model(benchmark, row, attack, epoch)
    if int(epoch) == 0:
        return (
            f"{RESULTS}/{benchmark}/models/{reference_models(config, benchmark)[row]}"
        )
    return f"{RESULTS}/{benchmark}/unlearn/{row}/epoch_{epoch}"


def attacked_model(benchmark, row, attack, epoch):
    return f"{RESULTS}/{benchmark}/attack/{row}/{attack}/epoch_{epoch}"


def eval_file(benchmark, row, epoch, attack=NO_ATTACK):
    return eval_path(RESULTS, benchmark, row, epoch, attack)


def reference_eval(benchmark, row, attack):
    """The unattacked oracle's evaluation a row's metrics are relative to (PrivLeak, forget
    quality); an attacked oracle is read against itself unattacked. None on WMDP and for the
    oracle itself."""
    published = retain_log_file(config, benchmark, row)
    if published:  # TOFU's forget quality against open-unlearning's retain-model log
        return published
    oracle = oracle_row(benchmark, row)
    is_oracle = oracle is None and ORACLE_ROLE[family(benchmark)] is not None
    if is_oracle and attack != NO_ATTACK:
        oracle = row
    return eval_file(benchmark, oracle, 0) if oracle else None


def eval_files(benchmark):
    """Every evaluation of a benchmark's rows as they are (the attacked ones: rule
    robustness)."""
    return [eval_file(benchmark, row, e) for row, e in evaluations(config, benchmark)]


def launcher(gpus):
    """One process, or accelerate with envs/accelerate.yaml (runtime.launch_command)."""
    return launch_command(
        gpus, Path(workflow.basedir).parent / "envs" / "accelerate.yaml"
    )


def strategy(benchmark, gpus, model=None):
    """single, ddp or fsdp: the same function the GPU plan uses (runtime.parallel_strategy),
    for the benchmark's start model or the given one (a hub id or architecture)."""
    from bilevel_unlearning.plan import resolve_architecture, start_model

    params = resolve_architecture(model or start_model(config, benchmark)).params()
    return parallel_strategy(int(gpus), params)


def built_from(wildcards):
    """The hub id a built model is fine-tuned from (its architecture sizes the job); None
    for the miniature, whose base is its own."""
    if MINIATURE:
        return None
    return config["hub"][wildcards.benchmark]["models"][wildcards.role]["build_from"]


# ---------------------------------------------------------------- paper outputs
REPORT_CODE = Path(bilevel_unlearning.__file__).parent / "report"


def report_code(*modules):
    """A report's code files: its own modules and those every report shares, the metric
    catalog included (a metric's scale or digits changes what every table shows)."""
    shared = ("run.py", "figures.py", "style.py", "tables.py")
    catalog = str(REPORT_CODE.parent / "metric_catalog.py")
    return [str(REPORT_CODE / m) for m in (*shared, *modules)] + [catalog]


def part_outputs(part):
    """What a part (paper, robustness) writes under paper_figures/ (report.jobs)."""
    return _part_outputs(TABLES, FIGURE_JOBS, part)


def part_results(part):
    """Every result file a part's tables and figures read (report.jobs)."""
    return _part_results(TABLES, FIGURE_JOBS, part)


def committed_bands(tables):
    """The seed-band files (report.bands) committed beside the expected tables."""
    folder = Path("config/expected") / str(config["expected_tables"])
    return [str(p) for t in tables if (p := folder / f"{t}.band.csv").is_file()]


def written_manifests():
    """The manifests `verify` rechecks: the paper's, and the robustness part's once written."""
    robustness = "paper_figures/MANIFEST_robustness.json"
    return ["paper_figures/MANIFEST.json"] + (
        [robustness] if Path(robustness).exists() else []
    )


# ---------------------------------------------------------------- hub mode (download.smk)
_warned = set()


def bio_forget_input(wildcards):
    """The gated WMDP bio forget corpus, an input of the WMDP download when bio is a topic.

    Evaluated only when that download is part of the run. Missing: a run stops while Snakemake
    builds its plan, before any job, with how to obtain the file, where to put it, and how to
    run without bio; a dry run (-n) prints the same text as a warning and shows the plan.
    """
    if "bio" not in WMDP_TOPICS:
        return []
    try:
        return str(require_bio_forget_file(config["wmdp"]["bio_forget_file"]))
    except GatedDataError as error:
        if not workflow.dryrun:
            raise WorkflowError(str(error)) from None
        if "bio" not in _warned:
            _warned.add("bio")
            logger.warning(f"WARNING (a real run stops here): {error}")
        return []


# ---------------------------------------------------------------- GPU plan (plan.smk)
def unlearn_gpus(benchmark):
    """(GPUs, where the number comes from) of a benchmark's unlearning jobs: the `gpus`
    resource of its rule (as a profile sets it), else plan.default_gpus."""
    from bilevel_unlearning.plan import default_gpus

    resource = workflow.get_rule(f"unlearn_{benchmark}").resources.get("gpus")
    if resource is not None and not resource.is_evaluable():
        value = resource.value
        if isinstance(value, int) and value >= 1:
            return value, f"rule unlearn_{benchmark}'s gpus resource"
    fallback = default_gpus(benchmark, config["source"])
    return (
        fallback,
        "plan.default_gpus, a default (the rule asks for no GPU; see profiles/)",
    )


@functools.cache
def unlearn_time_limits(benchmark):
    """Run -> sbatch -t (minutes, first attempt) of a benchmark's unlearning jobs from the GPU
    plan on its rule's GPUs (plan.workload.time_limits: the plan's runtime x 3 + 30); planned
    once per benchmark, each job's attempt multiplies it."""
    from bilevel_unlearning.plan.workload import time_limits

    gpus, _ = unlearn_gpus(benchmark)
    return time_limits(config, benchmark, gpus, Path(RESULTS))


def print_plan():
    """Print the GPU plan of the config's unlearning runs (plan.config_plan); returns it."""
    from bilevel_unlearning.plan import config_plan

    table = config_plan(config, {b: unlearn_gpus(b) for b in BENCHMARKS})
    print(table, end="")
    return table


def heldout_split_input(w):
    """A held-out relearning's split (attack.heldout); nothing for the other attacks."""
    if attack_kind(w.attack) != HELDOUT_RELEARN:
        return []
    return heldout_split_path(RESULTS, w.benchmark, heldout_part(w.benchmark, w.row))
