"""Validation of the workflow configuration (config/config.yaml and its overrides).

A bad value should stop the workflow before any job starts, with a message that names the key,
the offending value and what would be accepted, so that a typo never costs a training run.
Two layers do this: the JSON Schema in workflow/schemas/config.schema.yaml (types, bounds,
allowed names, no unknown keys) and the cross-field rules below that a schema cannot express.
Every problem is collected and reported at once, not just the first.
"""

from bilevel_unlearning.config.hub_rules import reference_model_roles
from bilevel_unlearning.config.loading import (
    SCHEMA_PATH,
    check_config_files,
    iter_schema_keys,
    load_config,
    load_schema,
    read_yaml,
    validate_config,
)
from bilevel_unlearning.config.messages import README, ConfigError, format_problems
from bilevel_unlearning.config.method_rules import HYPERPARAMETER_USERS, RULES_NEEDING_RETAIN
from bilevel_unlearning.config.rules import cross_field_problems

__all__ = [
    "HYPERPARAMETER_USERS",
    "README",
    "RULES_NEEDING_RETAIN",
    "SCHEMA_PATH",
    "ConfigError",
    "check_config_files",
    "cross_field_problems",
    "format_problems",
    "iter_schema_keys",
    "load_config",
    "load_schema",
    "read_yaml",
    "reference_model_roles",
    "validate_config",
]
