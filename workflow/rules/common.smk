# Shared helpers: config validation (before any job starts), paths, job parameters.
import json
import os
import sys
from pathlib import Path

from bilevel_unlearning.config import validate_config
from bilevel_unlearning.data.layout import TOFU_RETAIN_OF, layout_files
from bilevel_unlearning.data.miniature import LM_EVAL_TASKS
from bilevel_unlearning.models.recipes import model_roles, role_sources

validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))

RESULTS = config["results_dir"]
BENCHMARKS = config["benchmarks"]
SEED = config["seed"]
ENV = "../../envs/bilevel-unlearning.yaml"
# The model each benchmark's unlearning starts from (the oracles are references, not starts).
START_ROLE = {"muse": "target", "tofu": "full", "wmdp": "original"}
# Jobs run `python -m bilevel_unlearning.cli`: the interpreter Snakemake runs in (the project's
# .venv) comes first on PATH, unless --sdm conda activates the rule's environment in front of it.


envvars:
    "PATH",


_path = os.environ["PATH"]
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{_path}"


def as_json(value):
    """A config section as a JSON job parameter: changing it reruns exactly the jobs using it."""
    return json.dumps(value, sort_keys=True)


def data_files(benchmark):
    """Every file the data stage writes for a benchmark (lm-eval task files included)."""
    files = [f"{RESULTS}/{benchmark}/data/{f}" for f in layout_files(benchmark)]
    if benchmark == "wmdp":
        files += [f"{RESULTS}/wmdp/data/tasks/{t}.yaml" for t in LM_EVAL_TASKS]
    return files


def model_dirs(benchmark):
    return [f"{RESULTS}/{benchmark}/models/{r}" for r in model_roles(benchmark, config)]


def ancestor_named(path, name):
    """The folder called `name` that holds `path`: a job's data or models folder from its files."""
    return str(next(p for p in Path(path).parents if p.name == name))


def unlearn_runs(benchmark):
    """Run name -> (method name, the run's settings) of a benchmark.

    The settings are the benchmark's `unlearn` entry without its method list (adding a method
    must not rerun the others), plus the TOFU split or the WMDP topics of the run.
    """
    entry = config["unlearn"][benchmark]
    shared = {k: v for k, v in entry.items() if k != "methods"}
    if benchmark == "wmdp":
        shared["topics"] = config["wmdp"]["topics"]
    if benchmark != "tofu":
        return {m: (m, shared) for m in entry["methods"]}
    return {
        f"{m}-{split}": (
            m,
            {**shared, "forget_split": split, "retain_split": TOFU_RETAIN_OF[split]},
        )
        for m in entry["methods"]
        for split in config["tofu"]["forget_splits"]
    }


def unlearn_files(benchmark, run):
    """A run's epoch folders and its step log (plain paths, for inputs)."""
    folder = f"{RESULTS}/{benchmark}/unlearn/{run}"
    epochs = range(1, config["unlearn"][benchmark]["epochs"] + 1)
    return [f"{folder}/epoch_{e}" for e in epochs] + [f"{folder}/train_log.jsonl"]


def unlearn_outputs(benchmark, run):
    """The same as outputs: the epoch folders marked as directories."""
    *folders, step_log = unlearn_files(benchmark, run)
    return [directory(f) for f in folders] + [step_log]


def start_model(benchmark):
    return f"{RESULTS}/{benchmark}/models/{START_ROLE[benchmark.split('_')[0]]}"


def launcher(gpus):
    """How a training job starts: one process, or one per GPU under accelerate (DDP)."""
    if int(gpus) > 1:
        return f"accelerate launch --multi_gpu --num_processes {int(gpus)} -m"
    return "python -m"
