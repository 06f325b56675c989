"""Which multimodal model a stage runs on, and how it is loaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

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
    device_map: Literal["auto", "balanced", "balanced_low_0", "sequential"] | None = Field(
        None,
        description="split a model larger than one device across the GPUs (then CPU, then disk) with "
        "accelerate; None = the whole model on `device`",
    )
    max_memory: dict[str, str] | None = Field(
        None,
        description="with device_map: memory per device for the weights, e.g. {'0': '70GiB', '1': '70GiB', "
        "'cpu': '200GiB'}; what does not fit goes to offload_folder",
    )
    offload_folder: str | None = Field(
        None, description="with device_map: folder for weights offloaded to disk (default: a temp folder)"
    )
    local_files_only: bool = Field(
        False, description="never contact a hub (set HF_HUB_OFFLINE=1 for the same effect everywhere)"
    )
    trust_remote_code: bool = Field(
        False, description="run model code shipped with the checkpoint; off unless you trust its author"
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="attention kernel; None = transformers' default"
    )

    @model_validator(mode="after")
    def _placement(self) -> ModelConfig:
        if self.device_map is None and (self.max_memory is not None or self.offload_folder is not None):
            raise ValueError("model.max_memory / model.offload_folder need model.device_map (e.g. auto)")
        for dev in self.max_memory or {}:
            if not (dev.isdigit() or dev in ("cpu", "mps") or dev.startswith("cuda:")):
                raise ValueError(f"model.max_memory key {dev!r} is not a GPU index, cuda:N, cpu or mps")
        return self
