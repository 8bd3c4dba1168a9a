"""Reading a config defensively: a value of the wrong type was already reported by the schema,
so the cross-field rules skip it rather than crash on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bilevel_unlearning.benchmarks import BENCHMARKS
from bilevel_unlearning.config.messages import strict_integer


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items_of(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def int_or_none(value: Any) -> int | None:
    return value if strict_integer(None, value) else None


def has_trait(name: str, trait: str) -> bool:
    """Whether a benchmark has a trait of benchmarks.Benchmark (per_split, topics); False for
    a name that is not a benchmark (the schema names it)."""
    known = BENCHMARKS.get(name)
    return bool(known and getattr(known, trait))
