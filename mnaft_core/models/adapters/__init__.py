"""Neuron adapters per model family. Importing this package registers every family."""

from mnaft_core.models.adapters import llava, qwen2_5_vl, qwen2_vl
from mnaft_core.models.adapters.base import (
    Adapter,
    MlpSite,
    UnsupportedModelError,
    adapter_for,
    neuron_sites,
    supported_families,
)

__all__ = [
    "Adapter",
    "MlpSite",
    "UnsupportedModelError",
    "adapter_for",
    "llava",
    "neuron_sites",
    "qwen2_5_vl",
    "qwen2_vl",
    "supported_families",
]
