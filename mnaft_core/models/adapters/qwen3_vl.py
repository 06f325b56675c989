"""Qwen3-VL: vision blocks linear_fc1 -> GELU -> linear_fc2; language layers gate/up/down with SiLU."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import GATED, MlpSite, register, tower


@register("qwen3-vl", "qwen3_vl")
def qwen3_vl_sites(model: nn.Module) -> list[MlpSite]:
    vision = tower(model, "vision", ("model.visual.blocks",), "mlp", ("linear_fc1",), "linear_fc2", "act_fn")
    return vision + tower(model, "language", ("model.language_model.layers",), "mlp", *GATED)
