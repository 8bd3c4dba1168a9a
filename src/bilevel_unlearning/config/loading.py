"""Loading: reading a config file (duplicate keys are errors), the schema, and validation of the
merged config against the schema and the cross-field rules before any job starts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from bilevel_unlearning.config.messages import ConfigError, schema_problems
from bilevel_unlearning.config.rules import as_mapping, cross_field_problems

SCHEMA_PATH = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


# --------------------------------------------------------------------------------------------
# Loading


# libyaml's parser where PyYAML has it (the wheels do): the workflow reads the config files and
# the schema each time it plans, and the pure-Python parser takes a few tenths of a second
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(SAFE_LOADER):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found key {key!r} twice (first {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, rejecting duplicate keys, so the value seen is the value written."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ConfigError([f"the file is not valid YAML: {error}"], source=path) from error


def check_config_files(paths: Sequence[str | Path]) -> None:
    """Re-read every config file with the project's loader: duplicate keys (which Snakemake's
    loader accepts, the last one winning) become an error naming the file, line and key."""
    for path in paths:
        read_yaml(path)


def load_schema(schema_path: str | Path | None = None) -> dict:
    """Read the config schema; by default the one in this repository's workflow/schemas/."""
    path = Path(schema_path) if schema_path is not None else SCHEMA_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"config schema not found at {path}. It is read from the repository checkout "
            "(workflow/schemas/config.schema.yaml); when the package is installed outside the "
            "repository, pass schema_path= explicitly."
        )
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=SAFE_LOADER)


def load_config(path: str | Path, schema_path: str | Path | None = None) -> dict:
    """Read a YAML config file and validate it; returns the config or raises ConfigError."""
    config = read_yaml(path)
    try:
        return validate_config(config, schema_path)
    except ConfigError as error:
        raise ConfigError(error.problems, source=path) from None


def validate_config(config: Any, schema_path: str | Path | None = None) -> dict:
    """Check config against the schema and the cross-field rules; returns it unchanged.

    Raises ConfigError listing every problem found.
    """
    schema = load_schema(schema_path)
    problems = schema_problems(config, schema)
    if isinstance(config, Mapping):
        problems += cross_field_problems(config, schema)
    if problems:
        raise ConfigError(problems)
    return config  # type: ignore[return-value]


def iter_schema_keys(schema: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, dict]]:
    """Every named property of the schema as (dotted path, subschema); used to check docs."""
    for name, sub in as_mapping(schema.get("properties")).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, sub
        yield from iter_schema_keys(sub, path)
