"""Where a model family keeps its MLP neurons, and which weight slices belong to each.

A *neuron* is one intermediate unit j of an MLP. Its parameters are row j (and bias j) of every input
projection (gate/up or fc1) and column j of the output projection (down or fc2). Its *activation* is
the output of the activation function applied to the gate (LAPE's convention) or, optionally, the gated
product that enters the output projection.

A new family is one small module: subclass nothing, just return ``MlpSite`` lists from a function and
register it with ``@register``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

Module = Literal["vision", "language"]
ActivationPoint = Literal["act", "product"]


@dataclass(frozen=True)
class MlpSite:
    """One MLP: its path in the model, the projections that make up its neurons, and where to record."""

    module: Module
    layer: int
    path: str  # dotted path of the MLP module, e.g. "model.visual.blocks.3.mlp"
    in_projs: tuple[str, ...]  # child names whose rows (out features) are neurons: gate/up or fc1
    out_proj: str  # child name whose columns (in features) are neurons: down or fc2
    act: str  # child name of the activation-function module applied to the gate / fc1 output

    def mlp(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.path)

    def width(self, model: nn.Module) -> int:
        """Number of neurons (the intermediate size)."""
        return self.linear(model, self.out_proj).in_features

    def linear(self, model: nn.Module, name: str) -> nn.Linear:
        """The projection ``name`` of this MLP; anything but a plain ``nn.Linear`` (a quantized layer, a
        fused kernel) has no neuron slices this library can train or mask."""
        layer = self.mlp(model).get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise UnsupportedModelError(
                f"{self.path}.{name} is {type(layer).__name__}, not torch.nn.Linear: neuron slices need "
                "plain linear projections (load the model unquantized, without fused MLP kernels)"
            )
        return layer

    def parameter_slices(self, model: nn.Module) -> dict[str, tuple[str, int]]:
        """Full parameter name -> (kind, axis): the axis along which neuron j owns index j."""
        out: dict[str, tuple[str, int]] = {}
        for name in self.in_projs:
            lin = self.linear(model, name)
            out[f"{self.path}.{name}.weight"] = ("in", 0)
            if lin.bias is not None:
                out[f"{self.path}.{name}.bias"] = ("in", 0)
        self.linear(model, self.out_proj)
        out[f"{self.path}.{self.out_proj}.weight"] = ("out", 1)
        return out


@dataclass(frozen=True)
class Adapter:
    family: str
    model_types: tuple[str, ...]  # config.model_type values this adapter serves
    sites: Callable[[nn.Module], list[MlpSite]]


_REGISTRY: dict[str, Adapter] = {}
_REFUSED: dict[str, str] = {}  # model type -> why its neurons are not handled


def register(family: str, *model_types: str) -> Callable[[Callable[[nn.Module], list[MlpSite]]], Adapter]:
    def wrap(fn: Callable[[nn.Module], list[MlpSite]]) -> Adapter:
        adapter = Adapter(family, model_types, fn)
        _REGISTRY[family] = adapter
        return adapter

    return wrap


def refuse(reason: str, *model_types: str) -> None:
    """Name model types this library knows and deliberately does not handle, with the reason."""
    for t in model_types:
        _REFUSED[t] = reason


def refused_model_types() -> dict[str, str]:
    return dict(_REFUSED)


def supported_families() -> dict[str, tuple[str, ...]]:
    return {a.family: a.model_types for a in _REGISTRY.values()}


class UnsupportedModelError(ValueError):
    """A model whose MLP neurons this library does not know how to find."""


def adapter_for(model: nn.Module) -> Adapter:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in _REFUSED:
        raise UnsupportedModelError(
            f"model type {model_type!r} ({type(model).__name__}): {_REFUSED[model_type]}"
        )
    for adapter in _REGISTRY.values():
        if model_type in adapter.model_types:
            return adapter
    supported = ", ".join(f"{f} ({', '.join(t)})" for f, t in sorted(supported_families().items()))
    raise UnsupportedModelError(
        f"no neuron adapter for model type {model_type!r} ({type(model).__name__}). Supported: {supported}. "
        "A new family is one small module in mnaft_core/models/adapters/ that lists its MLP sites "
        "(see adapters/base.py)."
    )


def neuron_sites(model: nn.Module) -> list[MlpSite]:
    """Every MLP of the vision encoder and of the language model, vision first, in layer order."""
    sites = adapter_for(model).sites(model)
    if not sites:
        raise UnsupportedModelError(f"adapter for {type(model).__name__} found no MLP layers")
    return sites


def indexed_children(model: nn.Module, path: str) -> list[str]:
    """Dotted paths of the numbered children of a ModuleList at ``path`` (e.g. the decoder layers)."""
    mods = model.get_submodule(path)
    if not isinstance(mods, nn.ModuleList):
        raise UnsupportedModelError(
            f"{type(model).__name__}: {path} is {type(mods).__name__}, expected the ModuleList of its layers"
        )
    return [f"{path}.{i}" for i in range(len(mods))]


def tower(
    model: nn.Module,
    module: Module,
    candidates: tuple[str, ...],
    mlp: str,
    in_projs: tuple[str, ...],
    out_proj: str,
    act: str,
    *,
    required: bool = True,
) -> list[MlpSite]:
    """The MLP sites of one tower: ``{layers}.{i}.{mlp}`` for the first of ``candidates`` (ModuleList
    paths) the model has. A tower without its own MLPs (``required=False``) gives no sites."""
    names = {n for n, _ in model.named_modules()}
    path = next((p for p in candidates if p in names), None)
    if path is None:
        if not required:
            return []
        raise UnsupportedModelError(
            f"{type(model).__name__}: none of the {module} layer lists {', '.join(candidates)} exists"
        )
    return [
        MlpSite(module, i, f"{p}.{mlp}", in_projs, out_proj, act)
        for i, p in enumerate(indexed_children(model, path))
    ]


GATED = (("gate_proj", "up_proj"), "down_proj", "act_fn")  # SwiGLU / GeGLU: act(gate) * up -> down
FC = (("fc1",), "fc2", "activation_fn")  # CLIP / SigLIP style: fc1 -> act -> fc2
