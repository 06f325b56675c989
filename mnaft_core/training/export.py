"""Exports of a fine-tuned model: a plain merged checkpoint, and a compact neuron-delta file.

The neuron-delta file (safetensors) holds, for every parameter a mask touches, the neuron indices and the
*merged values* of those slices (not differences): applying it is a copy, so base + delta reproduces the
merged weights bit for bit, whatever the dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from mnaft_core._files import sort_safetensors_metadata
from mnaft_core.models.adapters import neuron_sites
from mnaft_core.selection.mask import NeuronMask

DELTA_FORMAT = "mnaft-neuron-delta/1"


def save_neuron_delta(merged: nn.Module, mask: NeuronMask, path: Path, mask_ref: str = "") -> int:
    """Write the masked slices of ``merged``; returns the number of stored values."""
    params = dict(merged.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    axes: dict[str, int] = {}
    for site in neuron_sites(merged):
        m = mask.sites.get(site.path)
        if m is None:
            continue
        idx = torch.from_numpy(m.neurons().astype(np.int64))
        if idx.numel() == 0:
            continue
        for name, (_, axis) in site.parameter_slices(merged).items():
            tensors[f"{name}::index"] = idx.clone()  # safetensors refuses shared storage
            tensors[f"{name}::values"] = params[name].detach().index_select(axis, idx).cpu().contiguous()
            axes[name] = axis
    meta = {
        "format": DELTA_FORMAT,
        "fingerprint": mask.fingerprint,
        "mask": mask_ref,
        "axes": json.dumps(axes),
    }
    save_file(tensors, str(path), metadata=meta)
    sort_safetensors_metadata(path)  # a resumed run's delta equals an uninterrupted run's in bytes
    return sum(t.numel() for k, t in tensors.items() if k.endswith("::values"))


@torch.no_grad()
def apply_neuron_delta(base: nn.Module, path: Path) -> nn.Module:
    """Copy the stored slices into ``base`` in place (its fingerprint should be the mask's)."""
    params = dict(base.named_parameters())
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != DELTA_FORMAT:
            raise ValueError(f"{path}: not a neuron-delta file (format {meta.get('format')!r})")
        for name, axis in json.loads(meta["axes"]).items():
            if name not in params:
                raise ValueError(f"{path}: parameter {name} does not exist in {type(base).__name__}")
            p = params[name]
            values = f.get_tensor(f"{name}::values")
            idx = f.get_tensor(f"{name}::index").to(p.device)
            expect = list(p.shape)
            expect[axis] = idx.numel()
            if list(values.shape) != expect:
                raise ValueError(
                    f"{path}: {name} slices have shape {list(values.shape)}, the model needs {expect}"
                )
            p.index_copy_(axis, idx, values.to(p.device, p.dtype))
    return base
