"""PaddleOCR-VL: a SigLIP-style NaViT tower (fc1 -> GELU -> fc2) and an ERNIE-4.5 gate/up/down LM."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import FC, GATED, MlpSite, register, tower


@register("paddleocr-vl", "paddleocr_vl")
def paddleocr_vl_sites(model: nn.Module) -> list[MlpSite]:
    vision = tower(model, "vision", ("model.visual.vision_model.encoder.layers",), "mlp", *FC)
    return vision + tower(model, "language", ("model.language_model.layers",), "mlp", *GATED)
