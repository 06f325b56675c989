"""Qwen2.5-VL: gate/up/down with SiLU in both the vision blocks and the language layers."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import MlpSite, indexed_children, register


@register("qwen2.5-vl", "qwen2_5_vl")
def qwen2_5_vl_sites(model: nn.Module) -> list[MlpSite]:
    gated = ("gate_proj", "up_proj")
    vision = [
        MlpSite("vision", i, f"{p}.mlp", gated, "down_proj", "act_fn")
        for i, p in enumerate(indexed_children(model, "model.visual.blocks"))
    ]
    language = [
        MlpSite("language", i, f"{p}.mlp", gated, "down_proj", "act_fn")
        for i, p in enumerate(indexed_children(model, "model.language_model.layers"))
    ]
    return vision + language
