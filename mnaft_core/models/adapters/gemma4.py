"""Gemma 4: vision MLPs gate/up/down through clippable linears (their ``.linear`` holds the weights);
a Gemma language model with GeGLU gate/up/down."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import GATED, MlpSite, register, tower

_CLIP = (("gate_proj.linear", "up_proj.linear"), "down_proj.linear", "act_fn")


@register("gemma4", "gemma4")
def gemma4_sites(model: nn.Module) -> list[MlpSite]:
    vision = tower(model, "vision", ("model.vision_tower.encoder.layers",), "mlp", *_CLIP)
    return vision + tower(model, "language", ("model.language_model.layers",), "mlp", *GATED)
