"""Mistral 3: a Pixtral tower whose feed-forward is gated (gate/up/down) and a Mistral language model."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import GATED, MlpSite, register, tower


@register("mistral3", "mistral3")
def mistral3_sites(model: nn.Module) -> list[MlpSite]:
    vision = tower(model, "vision", ("model.vision_tower.transformer.layers",), "feed_forward", *GATED)
    return vision + tower(model, "language", ("model.language_model.layers",), "mlp", *GATED)
