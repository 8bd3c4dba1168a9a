"""A method's objective: its forget loss and retain loss evaluated on the model, by config name.

The losses themselves are pure functions of model outputs (``losses.py``); this module runs the
forward passes they need: the frozen reference model for NPO and KL, hidden states of a decoder
layer for RMU (through a forward hook, so the layer's own output is used, not a normed one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from bilevel_unlearning import methods
from bilevel_unlearning.unlearn import baldro, losses
from bilevel_unlearning.unlearn.data import MicroBatch


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder layers of a Llama-like causal LM (wrapped by DDP or not)."""
    inner = getattr(model, "module", model)
    return inner.model.layers


@contextlib.contextmanager
def captured_output(layer: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record the hidden states a decoder layer outputs during the forward passes inside."""
    store: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        store.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@dataclass
class Objective:
    """Forget loss + retain loss (or none) + the rule that combines their gradients."""

    config: Mapping[str, Any]
    reference: torch.nn.Module | None = None  # frozen copy of the model unlearning starts from
    reinforced: torch.nn.Module | None = None  # WHP: the reference fine-tuned on the forget set

    def __post_init__(self) -> None:
        self.forget = self.config["forget_loss"]
        self.retain = self.config.get("retain_loss")
        self.rule = self.config.get("rule", "weighted_sum")
        for frozen in (self.reference, self.reinforced):
            if frozen is not None:
                frozen.eval().requires_grad_(False)
        self._control: dict[int, torch.Tensor] = {}

    def to(self, device: torch.device) -> Objective:
        """Put the frozen models on the device the trained model computes on."""
        for frozen in (self.reference, self.reinforced):
            if frozen is not None:
                frozen.to(device)
        return self

    # -- which parameters move ----------------------------------------------------------------

    def rmu_layers(self, model: torch.nn.Module) -> list[int]:
        return methods.rmu_layers(self.config, len(decoder_layers(model)))

    def trainable(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        """All parameters; for RMU only mlp.down_proj of the chosen layers (others frozen), or
        with `trainable: all` (open-unlearning's TOFU RMU) every parameter its losses reach:
        the embeddings and the layers up to the steered one. The later layers, the final norm
        and the output layer get no gradient from RMU's losses, so they never moved; frozen,
        DDP does not wait for their gradients (it stopped with "parameters that were not used
        in producing loss")."""
        if self.forget != "rmu":
            return list(model.parameters())
        model.requires_grad_(False)
        layers = decoder_layers(model)
        if self.config.get("trainable") == "all":
            steered = max(self.rmu_layers(model))
            reached = [model.get_input_embeddings(), *layers[: steered + 1]]
            chosen = list(dict.fromkeys(p for m in reached for p in m.parameters()))
        else:
            chosen = [layers[i].mlp.down_proj.weight for i in self.rmu_layers(model)]
        for parameter in chosen:
            parameter.requires_grad_(True)
        return chosen

    # -- losses on a micro-batch --------------------------------------------------------------

    def _reference_logits(
        self, batch: Mapping[str, torch.Tensor], model: torch.nn.Module | None = None
    ) -> torch.Tensor:
        with torch.no_grad():
            return (model or self.reference)(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits

    def _hidden(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The output of the steering layer (the last RMU layer) for this batch."""
        layer = decoder_layers(model)[max(self.rmu_layers(model))]
        with captured_output(layer) as store:
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return store[0]

    def control_vector(self, topic: int, hidden_size: int, device: torch.device) -> torch.Tensor:
        if topic not in self._control:
            seed = int(self.config.get("seed", 0))
            self._control[topic] = losses.rmu_control_vector(hidden_size, seed, topic)
        return self._control[topic].to(device)

    def _inputs(
        self,
        model: torch.nn.Module,
        batch: Mapping[str, torch.Tensor],
        spec: losses.LossSpec,
        topic: int | None = None,
    ) -> losses.LossInputs:
        """Run exactly the forward passes the loss's spec asks for."""
        if spec.needs_hidden:
            hidden = self._hidden(model, batch)
            fields: dict[str, Any] = {"hidden": hidden, "attention_mask": batch["attention_mask"]}
            if spec.needs_reference:
                with torch.no_grad():
                    fields["ref_hidden"] = self._hidden(self.reference, batch)
            if topic is not None:
                fields["control_vector"] = self.control_vector(
                    topic, hidden.shape[-1], hidden.device
                )
            return losses.LossInputs(**fields)
        fields = {
            "logits": model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits,
            "labels": batch["labels"],
        }
        if spec.needs_reference:
            fields["ref_logits"] = self._reference_logits(batch)
        if spec.needs_reinforced:
            fields["reinforced_logits"] = self._reference_logits(batch, self.reinforced)
        return losses.LossInputs(**fields)

    def forget_loss(self, model: torch.nn.Module, micro: MicroBatch) -> torch.Tensor:
        spec = losses.FORGET_LOSSES[self.forget]
        inputs = self._inputs(model, micro.forget, spec, micro.topic)
        if self.config.get("baldro"):  # the per-sample values, reweighted (baldro.py)
            return baldro.reweighted_forget_loss(self.forget, inputs, self.config)
        return spec(inputs, self.config)

    def retain_loss(self, model: torch.nn.Module, micro: MicroBatch) -> torch.Tensor:
        spec = losses.RETAIN_LOSSES[self.retain]
        batch = baldro.retain_rows(micro.retain, self.config)
        return spec(self._inputs(model, batch, spec), self.config)
