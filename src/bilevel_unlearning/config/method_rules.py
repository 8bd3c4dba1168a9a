"""Cross-field rules of the `methods` entries and their per-benchmark overrides: how a
method's losses, rule and hyperparameters fit together, and RMU's layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bilevel_unlearning import methods
from bilevel_unlearning.config.messages import (
    key_path,
    not_allowed,
    one_of,
    show,
    suggestion,
)
from bilevel_unlearning.config.values import as_mapping, int_or_none, items_of

RULES_NEEDING_RETAIN = tuple(methods.RULES)

# Method hyperparameters and the losses that read them (the method catalog): a value elsewhere
# would be silently ignored, which is almost always a copy-paste mistake.
HYPERPARAMETER_USERS: dict[str, tuple[str, tuple[str, ...]]] = methods.key_users()


def method_problems(config: Mapping[str, Any]) -> list[str]:
    """Rules on how a method's losses, rule and hyperparameters fit together."""
    problems = []
    num_layers = int_or_none(
        as_mapping(as_mapping(config.get("models")).get("architecture")).get("num_hidden_layers")
    )
    check_layers = config.get("source") == "miniature" and num_layers is not None
    for name, method in as_mapping(config.get("methods")).items():
        if not isinstance(method, Mapping):
            continue
        problems += single_method_problems(name, method)
        if check_layers:
            problems += layer_problems(name, method, num_layers)  # type: ignore[arg-type]
    return problems + method_override_problems(config)


def method_override_problems(config: Mapping[str, Any]) -> list[str]:
    """unlearn.<benchmark>.method_overrides: of defined methods (an override of a method the
    benchmark does not list is kept for when it does), and the method with its overrides must
    still be a valid method."""
    problems = []
    methods = as_mapping(config.get("methods"))
    for benchmark, entry in as_mapping(config.get("unlearn")).items():
        for name, changes in as_mapping(as_mapping(entry).get("method_overrides")).items():
            path = ["unlearn", benchmark, "method_overrides", name]
            if name not in methods:
                problems.append(
                    not_allowed(path, name, "no such method: define it under `methods`")
                    + suggestion(name, list(methods))
                )
            elif isinstance(methods.get(name), Mapping) and isinstance(changes, Mapping):
                merged = {**methods[name], **changes}
                problems += [
                    f"{p} (with {key_path(path)})" for p in single_method_problems(name, merged)
                ]
    return problems


def single_method_problems(name: str, method: Mapping[str, Any]) -> list[str]:
    """Pairing rules within one method definition."""
    base = ["methods", name]
    forget, retain, rule = (method.get(k) for k in ("forget_loss", "retain_loss", "rule"))
    problems = []
    if rule is not None and retain is None:
        problems.append(
            f"config key '{key_path([*base, 'retain_loss'])}' is missing: rule '{rule}' "
            "combines the forget and retain gradients, so the method needs a retain_loss "
            "(one of: nll, kl, rmu)"
        )
    if retain is not None and rule is None:
        problems.append(
            f"config key '{key_path([*base, 'rule'])}' is missing: retain_loss '{retain}' "
            f"needs a rule that combines it with the forget loss ({one_of(RULES_NEEDING_RETAIN)})"
        )
    if rule == "blur" and ("gamma" in method) == ("alpha" in method):
        problems.append(
            f"config key '{key_path([*base, 'gamma'])}': rule 'blur' needs exactly one of gamma "
            "or alpha (the RMU form's retain weight), not "
            + ("both" if "gamma" in method else "neither")
        )
    if rule in ("weighted_sum", "blur_reversed") and "gamma" not in method:
        problems.append(
            f"config key '{key_path([*base, 'gamma'])}' is missing: rule '{rule}' needs gamma"
        )
    if "alpha" in method and rule not in (None, "blur"):
        problems.append(
            not_allowed([*base, "alpha"], method["alpha"], "alpha is read only by rule 'blur'")
        )
    if forget == "nll" and "negation" not in method:
        problems.append(
            f"config key '{key_path([*base, 'negation'])}' is missing: forget_loss 'nll' learns "
            "the forget set, which only unlearns as Task Vector, with negation set (e.g. 5.0)"
        )
    for key in ("reinforcement", "reinforce_epochs"):
        if forget == "whp" and key not in method:
            problems.append(
                f"config key '{key_path([*base, key])}' is missing: forget_loss 'whp' needs "
                "reinforcement and reinforce_epochs"
            )
    form = method.get("baldro")
    for key, needed in (("beta_dv", "dv"), ("sampling_ratio", "group")):
        if key in method and form != needed:
            problems.append(
                not_allowed([*base, key], method[key], f"read only with baldro: {needed}")
            )
    if form == "group" and forget == "rmu":
        problems.append(
            not_allowed(
                [*base, "baldro"],
                form,
                "BalDRO-G ranks samples by their log-likelihood, which RMU's hidden-state loss "
                "does not compute: use baldro: dv with rmu",
            )
        )
    if forget == "rmu" and retain is not None and retain != "rmu":
        problems.append(
            not_allowed(
                [*base, "retain_loss"],
                retain,
                "forget_loss 'rmu' pairs only with retain_loss 'rmu'",
            )
        )
    if retain == "rmu" and forget is not None and forget != "rmu":
        problems.append(
            not_allowed(
                [*base, "retain_loss"],
                retain,
                f"retain_loss 'rmu' pairs only with forget_loss 'rmu', not '{forget}' "
                "(use nll or kl)",
            )
        )
    for key in ("gamma", "alpha"):
        if key in method and rule is None:
            problems.append(
                not_allowed(
                    [*base, key],
                    method[key],
                    f"{key} weighs the retain gradient, but the method has no rule/retain_loss; "
                    "remove it or add both",
                )
            )
    for key, (loss_key, users) in HYPERPARAMETER_USERS.items():
        if key in method and method.get(loss_key) not in users:
            problems.append(
                not_allowed(
                    [*base, key],
                    method[key],
                    f"{key} is only read when {loss_key} is {' or '.join(users)}, "
                    f"and this method's {loss_key} is {show(method.get(loss_key))}",
                )
            )
    return problems


def layer_problems(name: str, method: Mapping[str, Any], num_layers: int) -> list[str]:
    """RMU layer indices must exist in the miniature model."""
    return [
        not_allowed(
            ["methods", name, "layers", index],
            layer,
            f"must be < models.architecture.num_hidden_layers ({num_layers}); "
            "layers are numbered from 0",
        )
        for index, layer in items_of(method.get("layers"))
        if int_or_none(layer) is not None and layer >= num_layers
    ]
