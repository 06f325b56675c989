"""A model larger than one device: accelerate's ``device_map`` places its blocks on the GPUs, then the
CPU, then disk, and moves activations between them with its own hooks. Inputs go where the first block
runs (``input_device``); statistics hooks see each layer's activation on that layer's device.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch
from torch import nn

from mnaft_core.models.config import ModelConfig


def placement_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """``from_pretrained`` arguments for ``cfg.device_map`` / ``max_memory`` / ``offload_folder``."""
    try:
        import accelerate  # noqa: F401  # transformers needs it for device_map
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("model.device_map needs accelerate: pip install accelerate") from e
    out: dict[str, Any] = {"device_map": cfg.device_map}
    if cfg.max_memory is not None:
        out["max_memory"] = {
            int(k) if k.isdigit() else k: int(v) if v.isdigit() else v for k, v in cfg.max_memory.items()
        }
    out["offload_folder"] = cfg.offload_folder or tempfile.mkdtemp(prefix="mnaft-offload-")
    return out


def input_device(model: nn.Module) -> torch.device:
    """Where a batch must go: the execution device of the first placed block (CPU for disk offload)."""
    placed: dict[str, Any] | None = getattr(model, "hf_device_map", None)
    if not placed:
        return next(model.parameters()).device
    first = next(iter(placed.values()))
    if isinstance(first, int):
        return torch.device("cuda", first)
    return torch.device("cpu" if first == "disk" else first)
