"""GPU plan of the unlearning runs (and their evaluations) before any job is submitted:
memory per GPU by component, runtime, disk and GPU-hours. `architecture` holds model shapes and
what a method needs, `memory` the estimate of one job, `table` its text, `workload` the jobs
of a workflow config, `evaluation` the cost of the evaluations the outputs read."""

from bilevel_unlearning.plan.architecture import PRESETS, resolve_architecture
from bilevel_unlearning.plan.memory import estimate
from bilevel_unlearning.plan.table import load_jobs, plan_table
from bilevel_unlearning.plan.workload import (
    DEFAULT_GPUS,
    FORGET_COUNTERS,
    config_jobs,
    config_plan,
    default_gpus,
    start_model,
)

__all__ = [
    "DEFAULT_GPUS",
    "FORGET_COUNTERS",
    "PRESETS",
    "config_jobs",
    "config_plan",
    "default_gpus",
    "estimate",
    "load_jobs",
    "plan_table",
    "resolve_architecture",
    "start_model",
]
