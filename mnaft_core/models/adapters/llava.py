"""LLaVA / LLaVA-NeXT: CLIP or SigLIP fc1 -> act -> fc2; Llama/Qwen2/Mistral gate/up/down."""

from __future__ import annotations

from torch import nn

from mnaft_core.models.adapters.base import MlpSite, indexed_children, register

# CLIPVisionModel exposes its encoder directly; SiglipVisionModel keeps it under `vision_model`.
_VISION_LAYERS = ("model.vision_tower.encoder.layers", "model.vision_tower.vision_model.encoder.layers")


@register("llava", "llava", "llava_next")
def llava_sites(model: nn.Module) -> list[MlpSite]:
    names = {n for n, _ in model.named_modules()}
    path = next((p for p in _VISION_LAYERS if p in names), _VISION_LAYERS[0])
    vision = [
        MlpSite("vision", i, f"{p}.mlp", ("fc1",), "fc2", "activation_fn")
        for i, p in enumerate(indexed_children(model, path))
    ]
    language = [
        MlpSite("language", i, f"{p}.mlp", ("gate_proj", "up_proj"), "down_proj", "act_fn")
        for i, p in enumerate(indexed_children(model, "model.language_model.layers"))
    ]
    return vision + language
