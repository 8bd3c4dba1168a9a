"""The one on-disk layout of each benchmark, shared by the miniature generator and the hub loaders.

Files are JSONL, one record per line, named after the hub dataset's config and split, with the
hub's field names. Every later stage reads these files and nothing else, so the real and the
miniature benchmarks go through one code path.
"""

from __future__ import annotations

from pathlib import Path

# relative path under results/{benchmark}/data -> fields every record carries
MUSE_LAYOUT: dict[str, tuple[str, ...]] = {
    "raw/forget.jsonl": ("text",),
    "raw/retain1.jsonl": ("text",),
    "raw/retain2.jsonl": ("text",),
    "raw/holdout.jsonl": ("text",),
    "verbmem/forget.jsonl": ("prompt", "gt"),
    "knowmem/forget_qa.jsonl": ("question", "answer"),
    "knowmem/retain_qa.jsonl": ("question", "answer"),
    "knowmem/forget_qa_icl.jsonl": ("question", "answer"),
    "knowmem/retain_qa_icl.jsonl": ("question", "answer"),
    "privleak/forget.jsonl": ("text",),
    "privleak/retain.jsonl": ("text",),
    "privleak/holdout.jsonl": ("text",),
}

TOFU_FORGET_SPLITS = ("forget01", "forget05", "forget10")
TOFU_RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
TOFU_FORGET_SHARE = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}
# Consecutive forget records of one entity on the real benchmarks, the unit a held-out split
# keeps whole (attack.heldout): a TOFU author's 20 QA pairs, in author order (TOFU's layout);
# one MUSE article or WMDP paper, whose entities no field names.
RECORDS_PER_ENTITY = {"muse": 1, "tofu": 20, "wmdp": 1}
_QA = ("question", "answer")
_PERTURBED = (
    "question",
    "answer",
    "paraphrased_question",
    "paraphrased_answer",
    "perturbed_answer",
)
TOFU_LAYOUT: dict[str, tuple[str, ...]] = {
    "full.jsonl": _QA,
    **{f"{s}.jsonl": _QA for s in TOFU_FORGET_SPLITS},
    **{f"{r}.jsonl": _QA for r in TOFU_RETAIN_OF.values()},
    **{f"{s}_perturbed.jsonl": _PERTURBED for s in TOFU_FORGET_SPLITS},
    "retain_perturbed.jsonl": _PERTURBED,
    "real_authors_perturbed.jsonl": ("question", "answer", "perturbed_answer"),
    "world_facts_perturbed.jsonl": ("question", "answer", "perturbed_answer"),
}

WMDP_TOPICS = ("bio", "cyber")
_MCQ = ("question", "choices", "answer")
WMDP_LAYOUT: dict[str, tuple[str, ...]] = {
    "corpora/bio-forget-corpus.jsonl": ("title", "abstract", "text"),
    "corpora/cyber-forget-corpus.jsonl": ("text",),
    "corpora/bio-retain-corpus.jsonl": ("text",),
    "corpora/cyber-retain-corpus.jsonl": ("text",),
    "wikitext/wikitext-2-raw-v1-test.jsonl": ("text",),
    "questions/wmdp-bio.jsonl": _MCQ,
    "questions/wmdp-cyber.jsonl": _MCQ,
    "questions/mmlu.jsonl": ("question", "subject", "choices", "answer"),
}

GENERAL_LAYOUT: dict[str, tuple[str, ...]] = {"corpus.jsonl": ("text",)}
GENERAL = "general"  # the corpus every miniature model pretrains on: a dataset, not a benchmark

LAYOUTS: dict[str, dict[str, tuple[str, ...]]] = {
    GENERAL: GENERAL_LAYOUT,
    "muse_news": MUSE_LAYOUT,
    "muse_books": MUSE_LAYOUT,
    "tofu": TOFU_LAYOUT,
    "wmdp": WMDP_LAYOUT,
}


def layout_files(benchmark: str) -> list[str]:
    """Relative paths of every file the data stage writes for a benchmark."""
    return sorted(LAYOUTS[benchmark])


def check_records(path: Path, records: list[dict], fields: tuple[str, ...]) -> None:
    """Fail with the file and field named when a split lacks what the loaders need."""
    if not records:
        raise ValueError(f"{path} has no records")
    for index, record in enumerate(records):
        missing = [f for f in fields if f not in record]
        if missing:
            raise ValueError(
                f"{path} record {index} lacks field(s) {missing}; needs {list(fields)}"
            )
