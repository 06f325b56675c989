"""The training methods behind one small interface, so the trainer never branches on the method.

- ``mnaft``: neuron deltas on the mask's slices (``neuron_delta.py``), per-batch language groups;
- ``full``: every parameter (optionally not the vision tower);
- ``lora``: peft LoRA on the configured modules.

Each gives the module to call, its trainable parameters, a hook to set the batch's languages, the
trainable state for checkpoints, and a merged plain Hugging Face model for export.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from mnaft_core.selection.mask import NeuronMask
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.neuron_delta import NeuronDeltaModel


class Trainable(Protocol):
    @property
    def module(self) -> nn.Module: ...

    def parameters(self) -> list[tuple[str, nn.Parameter]]: ...

    def activate(self, languages: Iterable[str] | None) -> None: ...

    def merged(self) -> nn.Module: ...


@dataclass
class MnaftTrainable:
    module: NeuronDeltaModel
    per_batch: bool

    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        return list(self.module.trainable_parameters())

    def activate(self, languages: Iterable[str] | None) -> None:
        self.module.activate(languages if self.per_batch else None)

    def merged(self) -> nn.Module:
        return self.module.merge()


@dataclass
class FullTrainable:
    module: nn.Module

    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def activate(self, languages: Iterable[str] | None) -> None:
        return None

    def merged(self) -> nn.Module:
        return self.module


@dataclass
class LoraTrainable:
    module: nn.Module  # a peft PeftModel

    def parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def activate(self, languages: Iterable[str] | None) -> None:
        return None

    def merged(self) -> nn.Module:
        merged: nn.Module = self.module.merge_and_unload()  # type: ignore[operator]
        return merged


def _vision_prefixes(model: nn.Module) -> tuple[str, ...]:
    names = {n for n, _ in model.named_modules()}
    return tuple(
        p + "." for p in ("model.visual", "model.vision_tower", "model.multi_modal_projector") if p in names
    )


def prepare(
    model: nn.Module, cfg: FinetuneConfig, mask: NeuronMask | None, fingerprint: str | None
) -> Trainable:
    """Wrap ``model`` for ``cfg.method``; a mask is required for mnaft and refused otherwise."""
    if cfg.method == "mnaft":
        if mask is None:
            raise ValueError("method mnaft needs a neuron mask (run select first)")
        return MnaftTrainable(NeuronDeltaModel(model, mask, fingerprint), per_batch=cfg.languages == "batch")
    if mask is not None:
        raise ValueError(f"method {cfg.method} trains without a mask; do not pass one")
    if cfg.method == "full":
        frozen = _vision_prefixes(model) if cfg.freeze_vision else ()
        for name, p in model.named_parameters():
            p.requires_grad_(not name.startswith(frozen))
        return FullTrainable(model)
    import peft

    for p in model.parameters():
        p.requires_grad_(False)
    lcfg = peft.LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
    )
    try:
        wrapped = peft.get_peft_model(model, lcfg)
    except ValueError as err:
        raise ValueError(f"lora.target_modules {cfg.lora.target_modules!r} matched no module: {err}") from err
    return LoraTrainable(wrapped)


def trainable_state(t: Trainable) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in t.parameters()}


@torch.no_grad()
def load_trainable_state(t: Trainable, state: dict[str, torch.Tensor]) -> None:
    params = dict(t.parameters())
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"checkpoint does not fit this run: missing {missing[:3]}, unexpected {extra[:3]}")
    for n, p in params.items():
        p.copy_(state[n].to(p.device, p.dtype))
