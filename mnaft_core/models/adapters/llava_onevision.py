"""LLaVA-OneVision: a SigLIP tower (fc1 -> GELU -> fc2) and a Qwen2 language model (gate/up/down)."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import FC, GATED, MlpSite, register, tower

_VISION = ("model.vision_tower.encoder.layers", "model.vision_tower.vision_model.encoder.layers")


@register("llava-onevision", "llava_onevision")
def llava_onevision_sites(model: nn.Module) -> list[MlpSite]:
    vision = tower(model, "vision", _VISION, "mlp", *FC)
    return vision + tower(model, "language", ("model.language_model.layers",), "mlp", *GATED)
