"""Neuron adapters per model family. Importing this package registers every family."""

from mnaft_core.models.adapters import (
    gemma3,
    gemma4,
    idefics3,
    internvl,
    llava,
    llava_onevision,
    mistral3,
    moe,
    paddleocr_vl,
    qwen2_5_vl,
    qwen2_vl,
    qwen3_vl,
)
from mnaft_core.models.adapters.base import (
    Adapter,
    MlpSite,
    UnsupportedModelError,
    adapter_for,
    neuron_sites,
    refused_model_types,
    supported_families,
)

__all__ = [
    "Adapter",
    "MlpSite",
    "UnsupportedModelError",
    "adapter_for",
    "gemma3",
    "gemma4",
    "idefics3",
    "internvl",
    "llava",
    "llava_onevision",
    "mistral3",
    "moe",
    "neuron_sites",
    "paddleocr_vl",
    "qwen2_5_vl",
    "qwen2_vl",
    "qwen3_vl",
    "refused_model_types",
    "supported_families",
]
