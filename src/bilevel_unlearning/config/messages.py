"""Messages: every problem as "config key 'a.b[2]': VALUE is not allowed: WHAT IS ALLOWED",
schema errors rewritten so, and the error that carries them all at once."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema

README = "config/README.md"
HUB_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$"  # the schema's hub_id

TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of keys to values",
    "null": "empty (null)",
}


class ConfigError(ValueError):
    """The configuration breaks the schema or a cross-field rule.

    ``problems`` keeps one line per problem, so callers and tests can inspect them one by one.
    """

    def __init__(self, problems: Sequence[str], source: str | Path | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(format_problems(self.problems, source))


def format_problems(problems: Sequence[str], source: str | Path | None = None) -> str:
    """Join the problems into one message that ends by telling the user what to do."""
    where = f" in {source}" if source else ""
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    lines = [f"Invalid workflow configuration{where} ({count}):"]
    lines += [f"  - {problem}" for problem in problems]
    lines.append(
        "Fix the config file (or the --configfile/--config override) and run again; "
        f"every key is documented in {README}."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Schema errors, rewritten as "config key 'a.b[2]': VALUE is not allowed: WHAT IS ALLOWED"


def strict_integer(_checker: Any, instance: Any) -> bool:
    """An integer is an int, not a float that happens to be whole (range(2.0) fails)."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", strict_integer),
)


def schema_problems(config: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every schema violation of config, one readable line each, in key order."""
    errors = sorted(_Validator(schema).iter_errors(config), key=_error_sort_key)
    problems: list[str] = []
    for error in errors:
        for problem in describe_error(error):
            if problem not in problems:
                problems.append(problem)
    return problems


def _error_sort_key(error: jsonschema.ValidationError) -> tuple:
    return (tuple(str(part) for part in error.path), error.validator)


def key_path(parts: Iterable[str | int]) -> str:
    """Dotted key path with list indices in brackets: unlearn.tofu.methods[2]."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def show(value: Any, limit: int = 60) -> str:
    """Short, unambiguous rendering of a config value for a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: Any) -> str:
    """The YAML-facing name of value's type (what the user wrote, not Python's name)."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def one_of(values: Iterable[Any]) -> str:
    """'one of: a, b, c' for enum-like messages."""
    return "one of: " + ", ".join(str(value) for value in values)


def suggestion(word: Any, choices: Iterable[str]) -> str:
    """'; did you mean X?' when a close match exists, to catch typos."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def not_allowed(path: Sequence[str | int], value: Any, allowed: str) -> str:
    return f"config key '{key_path(path)}': {show(value)} is not allowed: {allowed}"


def describe_error(error: jsonschema.ValidationError) -> list[str]:
    """Turn one jsonschema error into messages built from its validator, value and path."""
    path = list(error.absolute_path)  # a sub-error of anyOf: the path from the top
    kind, expected, value = error.validator, error.validator_value, error.instance

    if "propertyNames" in error.schema_path:
        # The instance is a key of the mapping at `path`, not a value.
        return [describe_key_name(path, value, kind, expected)]
    if kind == "required":
        return [
            f"config key '{key_path([*path, name])}' is missing: it is required"
            for name in expected
            if isinstance(value, Mapping) and name not in value
        ]
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        where = f"under '{key_path(path)}'" if path else "at the top level"
        return [
            f"config key '{key_path([*path, name])}' is not a known key: "
            f"allowed keys {where} are {', '.join(allowed)}" + suggestion(name, allowed)
            for name in value
            if name not in allowed
        ]
    if kind == "anyOf" and error.context:
        # e.g. "a hub id or null": explain the branch the value was meant for (not null)
        meant = [e for e in error.context if e.validator != "type" or e.validator_value != "null"]
        return describe_error(jsonschema.exceptions.best_match(meant or error.context))
    return [not_allowed(path, value, allowed_text(kind, expected, value))]


def describe_key_name(path: list[str | int], name: Any, kind: str, expected: Any) -> str:
    """Message for a mapping key rejected by propertyNames (bad benchmark or method name)."""
    where = f"config key '{key_path([*path, name])}'"
    if kind == "enum":
        return (
            f"{where}: {show(name)} is not allowed as a key of '{key_path(path)}': "
            f"must be {one_of(expected)}" + suggestion(name, expected)
        )
    if kind == "pattern":
        return (
            f"{where}: {show(name)} is not allowed as a name: use lower-case letters, digits "
            f"and underscores, starting with a letter (pattern {expected})"
        )
    return f"{where}: {show(name)} is not allowed as a key: {allowed_text(kind, expected, name)}"


def allowed_text(kind: str, expected: Any, value: Any) -> str:
    """What the schema keyword `kind` with value `expected` accepts, in words."""
    if kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        text = "must be " + " or ".join(TYPE_NAMES.get(name, name) for name in names)
        text += f", not {type_name(value)}"
        if isinstance(value, str) and _looks_numeric(value):
            text += numeric_string_hint(value)
        return text
    if kind == "enum":
        return f"must be {one_of(expected)}" + suggestion(value, [str(x) for x in expected])
    if kind == "const":
        return f"must be {show(expected)}"
    bounds = {
        "minimum": ">=",
        "exclusiveMinimum": ">",
        "maximum": "<=",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        return f"must be {bounds[kind]} {expected}"
    if kind == "multipleOf":
        return f"must be a multiple of {expected}"
    if kind == "minItems":
        return f"must be a list of at least {expected} item" + ("s" if expected != 1 else "")
    if kind == "maxItems":
        return f"must be a list of at most {expected} item" + ("s" if expected != 1 else "")
    if kind == "uniqueItems":
        repeated = sorted({show(x) for x in value if value.count(x) > 1}) if value else []
        return "items must be unique; repeated: " + ", ".join(repeated)
    if kind == "minProperties":
        return f"must have at least {expected} entr" + ("ies" if expected != 1 else "y")
    if kind == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kind == "pattern" and expected == HUB_ID_PATTERN:
        return (
            "must be a Hugging Face hub id, owner/name (e.g. muse-bench/MUSE-News): letters, "
            "digits, '.', '_' or '-' on each side of one '/', no spaces"
        )
    if kind == "pattern":
        return f"must match the pattern {expected}"
    return f"{kind} {show(expected)} fails"


def numeric_string_hint(text: str) -> str:
    """Why a number arrived as a string: the two usual causes, and their fixes."""
    if "e" in text.lower() and "." not in text:
        return (
            f" (YAML reads {text} as text; write it with a decimal point, e.g. "
            f"{text.lower().replace('e', '.0e', 1)})"
        )
    return (
        " (remove the quotes; numbers inside a nested --config value arrive as text, so set "
        "nested keys with --configfile)"
    )


def _looks_numeric(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
