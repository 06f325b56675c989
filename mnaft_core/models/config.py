"""Which multimodal model a stage runs on, and how it is loaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mnaft_core._base import StrictModel

EMBEDDED_ORGANISM = "embedded:organism"


class ModelConfig(StrictModel):
    """A hub id, a local folder, or the embedded model organism shipped under assets/."""

    name_or_path: str = Field(
        EMBEDDED_ORGANISM,
        min_length=1,
        description="hub id (Qwen/Qwen2-VL-2B-Instruct), local folder, or 'embedded:organism'",
    )
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) for hub ids")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weight dtype; auto = bfloat16 on CUDA, float32 on CPU"
    )
    device: str = Field("auto", description="torch device (cpu, cuda, cuda:1) or auto")
    local_files_only: bool = Field(
        False, description="never contact a hub (set HF_HUB_OFFLINE=1 for the same effect everywhere)"
    )
    trust_remote_code: bool = Field(
        False, description="run model code shipped with the checkpoint; off unless you trust its author"
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="attention kernel; None = transformers' default"
    )
