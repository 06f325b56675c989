"""Mixture-of-experts language models: refused, by name.

An expert's neuron is a neuron, but these families keep all experts of a layer in fused 3-D tensors
(``experts.gate_up_proj`` of shape experts x hidden x 2·width), routed per token: masking them needs a
per-expert slice and a routed recorder, which this library does not have yet. Refusing is better than
silently profiling only the dense vision tower.
"""

from __future__ import annotations

from mnaft_core.models.adapters.base import refuse

refuse(
    "a mixture-of-experts language model (fused expert tensors); mnaft profiles and masks dense MLPs only. "
    "Use the dense sibling (e.g. Qwen3-VL instead of Qwen3-VL-MoE)",
    "qwen3_vl_moe",
    "qwen3_5_moe",
    "glm4v_moe",
    "ernie4_5_vl_moe",
    "llama4",
    "qwen3_omni_moe_thinker",
)
