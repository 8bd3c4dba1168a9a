"""The metric catalog: how each reported metric is labelled, read, shown and compared.

One entry per metric a table or figure reports: its label, which way is better, the factor
from the value in the result JSON to the number shown (every evaluator stores plain fractions;
MUSE's ROUGE and PrivLeak and WMDP's accuracies are shown x100, as their papers report them),
the digits shown, and the tolerance (in shown units) within which a fresh run must match the
committed expected tables. Which metrics each table shows is here
too, so tables, T4, the figures and the expected-table comparison read one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bilevel_unlearning.benchmarks import benchmark as bench


@dataclass(frozen=True)
class Metric:
    name: str  # the key in a result JSON's "metrics"
    label: str
    direction: str  # down | up | zero: which way is better
    scale: float = 1.0  # shown = value in the JSON (a fraction) x scale
    digits: int = 1
    # in shown units: a fresh run on another CPU of the same kind may flip a few greedy tokens
    # (float rounding), moving a ROUGE-based or accuracy x100 metric by a few points; KS
    # p-values compare as log10
    tolerance: float = 0.05
    log_tolerance: bool = False


MIA_SCORES = (
    ("PPL", "ppl"),
    ("PPL/lower", "ppl_lower"),
    ("PPL/zlib", "ppl_zlib"),
    *((f"Min-{k}%", f"min_{k}") for k in (5, 10, 20, 30, 40, 50, 60)),
    ("Min-40%++", "min_40_plus_plus"),
)
WMDP_TOPIC_LABELS = {"bio": "WMDP-Bio", "cyber": "WMDP-Cyber"}


def wmdp_metric(topic: str) -> str:
    """The accuracy metric of a WMDP topic (its lm-eval task's result)."""
    return f"wmdp_{topic}_acc"


METRICS: Mapping[str, Metric] = {
    m.name: m
    for m in (
        Metric("verbmem_forget", "VerbMem D_f", "down", 100.0, tolerance=5.0),
        Metric("knowmem_forget", "KnowMem D_f", "down", 100.0, tolerance=5.0),
        Metric("privleak", "PrivLeak", "zero", 100.0, tolerance=5.0),
        Metric("knowmem_retain", "KnowMem D_r", "up", 100.0, tolerance=5.0),
        # the same quantity as PrivLeak, per membership score: the same tolerance (on the
        # miniature's few texts one swapped forget/holdout pair moves it by several points)
        *(
            Metric(f"privleak_{slug}", label, "zero", 100.0, tolerance=5.0)
            for label, slug in MIA_SCORES
        ),
        *(
            Metric(wmdp_metric(topic), label, "down", 100.0, tolerance=5.0)
            for topic, label in WMDP_TOPIC_LABELS.items()
        ),
        Metric("mmlu_acc", "MMLU", "up", 100.0, tolerance=5.0),
        Metric("forget_quality", "Forget quality", "up", 1.0, 3, 1.0, log_tolerance=True),
        Metric("model_utility", "Model utility", "up", 1.0, 3),
        Metric("forget_truth_ratio", "Forget truth ratio", "up", 1.0, 3),
        Metric("forget_Q_A_Prob", "Forget Q-A Prob", "down", 1.0, 3),
        Metric("forget_Q_A_ROUGE", "Forget Q-A ROUGE", "down", 1.0, 3),
    )
}

# The columns of each paper table, in order
MUSE_TABLE = ("verbmem_forget", "knowmem_forget", "privleak", "knowmem_retain")
MUSE_MIA_TABLE = tuple(f"privleak_{slug}" for _, slug in MIA_SCORES)
TOFU_TABLE = (
    "forget_quality",
    "model_utility",
    "forget_truth_ratio",
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
)


# The paper tables: each reads the configured benchmarks of one family (report category)
PAPER_TABLES = {
    "table_1_muse": ("muse", "MUSE"),
    "table_s1_muse_mia": ("muse", "MUSE"),  # supplementary: MUSE's membership scores
    "table_2_wmdp": ("wmdp", "WMDP"),
    "table_3_tofu": ("tofu", "TOFU"),
}


def wmdp_table(topics: Sequence[str]) -> tuple[str, ...]:
    """T2's columns: each evaluated topic (in the catalog's order), then MMLU."""
    return (*(wmdp_metric(t) for t in WMDP_TOPIC_LABELS if t in topics), "mmlu_acc")


def table_metrics(benchmark: str, topics: Sequence[str]) -> tuple[str, ...]:
    """Every metric a benchmark's paper tables show (T1 and S1, T2 or T3)."""
    family = bench(benchmark).family
    if family == "muse":
        return (*MUSE_TABLE, *MUSE_MIA_TABLE)
    return wmdp_table(topics) if bench(benchmark).topics else TOFU_TABLE


# What an attack is read on per family (a benchmark with topics: its topics' accuracies and
# MMLU, wmdp_table), the forget metric first; F5 plots the forget metric(s) of each panel
ROBUSTNESS_METRICS = {
    "muse": ("verbmem_forget", "knowmem_forget", "knowmem_retain"),
    "tofu": ("forget_Q_A_Prob", "forget_Q_A_ROUGE", "model_utility"),
}
RELEARNING_PANELS = {"muse": ("knowmem_forget",), "tofu": ("forget_Q_A_Prob",)}


def robustness_metrics(benchmark: str, topics: Sequence[str]) -> tuple[str, ...]:
    """What an attack is read on: the forget metrics (first), then the utility kept."""
    if bench(benchmark).topics:
        return wmdp_table(topics)
    return ROBUSTNESS_METRICS[bench(benchmark).family]


def relearning_panels(benchmark: str, topics: Sequence[str]) -> tuple[str, ...]:
    """The forget metric(s) F5 shows for a benchmark (one per topic where it has topics)."""
    if bench(benchmark).topics:
        return wmdp_table(topics)[:-1]  # the topics, not MMLU
    return RELEARNING_PANELS[bench(benchmark).family]


# The form of the metrics in a result JSON, recorded in each. A result of another form is
# evaluated again (a parameter of the evaluate rules) and refused by the report's readers.
# 1: MUSE's ROUGE and PrivLeak stored x100; 2: every metric a plain fraction.
RESULT_FORMAT = 2


def check_result_format(record: Mapping[str, Any], path: object, rule: str) -> None:
    """A result of another form (an older version's x100) is refused: read as fractions it
    would be silently wrong by a factor of 100."""
    found = record.get("format", 1)
    if found != RESULT_FORMAT:
        raise ValueError(
            f"{path}: its metrics are in result format {found}, this version reads format "
            f"{RESULT_FORMAT} (metric_catalog.RESULT_FORMAT). Rule {rule} makes it again: "
            "`snakemake --cores N all` reruns every job whose result_format parameter changed; "
            "or delete the file"
        )


def shown(name: str, value: float) -> float:
    """A metric as tables and figures show it (x its scale); a metric not in the catalog as
    it is stored."""
    metric = METRICS.get(name)
    return value * metric.scale if metric else value


def tolerance(name: str) -> tuple[float, bool]:
    """(absolute tolerance, compare in log10) of a metric; 0.05 for one not in the catalog."""
    metric = METRICS.get(name)
    return (metric.tolerance, metric.log_tolerance) if metric else (0.05, False)
