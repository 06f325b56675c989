"""InternVL (the -hf checkpoints): InternViT layers fc1 -> GELU -> fc2; Qwen2/Llama gate/up/down."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import FC, GATED, MlpSite, register, tower


@register("internvl", "internvl")
def internvl_sites(model: nn.Module) -> list[MlpSite]:
    vision = tower(model, "vision", ("model.vision_tower.encoder.layer",), "mlp", *FC)
    return vision + tower(model, "language", ("model.language_model.layers",), "mlp", *GATED)
