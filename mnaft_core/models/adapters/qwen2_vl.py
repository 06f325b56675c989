"""Qwen2-VL: vision blocks fc1 -> QuickGELU -> fc2; language layers gate/up/down with SiLU."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import MlpSite, indexed_children, register


@register("qwen2-vl", "qwen2_vl")
def qwen2_vl_sites(model: nn.Module) -> list[MlpSite]:
    vision = [
        MlpSite("vision", i, f"{p}.mlp", ("fc1",), "fc2", "act")
        for i, p in enumerate(indexed_children(model, "model.visual.blocks"))
    ]
    language = [
        MlpSite("language", i, f"{p}.mlp", ("gate_proj", "up_proj"), "down_proj", "act_fn")
        for i, p in enumerate(indexed_children(model, "model.language_model.layers"))
    ]
    return vision + language
