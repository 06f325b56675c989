"""Idefics3 and SmolVLM: SigLIP-style vision layers fc1 -> GELU -> fc2; a Llama text model."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import FC, GATED, MlpSite, register, tower


@register("idefics3", "idefics3", "smolvlm")
def idefics3_sites(model: nn.Module) -> list[MlpSite]:
    vision = tower(model, "vision", ("model.vision_model.encoder.layers",), "mlp", *FC)
    return vision + tower(model, "language", ("model.text_model.layers",), "mlp", *GATED)
