"""The benchmarks: what sets each apart, in one object per benchmark, so the stages ask it
instead of testing names.

A benchmark belongs to a family (MUSE News and Books share MUSE's config section, metrics and
recipes); it names the model unlearning starts from and the oracle it should approach; TOFU
has one row per forget split and chat-formatted question-answer data; WMDP has topics (one
forget corpus and question set each) and no oracle. Torch-free: the workflow plans with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str
    family: str  # muse | tofu | wmdp: the config section, metrics and recipes it shares
    label: str  # in tables and figures
    start_role: str  # the model unlearning starts from
    oracle_role: str | None  # the model it should approach (None: no oracle, WMDP)
    per_split: bool = False  # TOFU: one row per forget split (row names end in -forgetNN)
    topics: bool = False  # WMDP: per-topic forget corpora and question sets
    chat_qa: bool = False  # TOFU: chat-formatted question-answer data, loss on the answer


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("muse_news", "muse", "News", "target", "retrain"),
        Benchmark("muse_books", "muse", "Books", "target", "retrain"),
        Benchmark("tofu", "tofu", "TOFU", "full", "retain", per_split=True, chat_qa=True),
        Benchmark("wmdp", "wmdp", "WMDP", "original", None, topics=True),
    )
}


def benchmark(name: str) -> Benchmark:
    """The benchmark of that name; an unknown name is an error listing the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}: one of {', '.join(BENCHMARKS)}") from None
