"""Exports of a fine-tuned model: a standard merged checkpoint, and a compact neuron-delta file.

The merged checkpoint is what the HF Trainer would write: weights in the base checkpoint's dtype (a bf16
base stays bf16 on disk), the processor in standard files (``models.processor.save_processor``), and a
model card (``README.md``) naming the base model, the method, the mask and data artifacts and the
scores known when it was written. It loads with plain transformers, no mnaft import needed.

The neuron-delta file (safetensors) holds, for every parameter a mask touches, the neuron indices and the
*merged values* of those slices (not differences): applying it is a copy, so base + delta reproduces the
merged weights bit for bit, whatever the dtype.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from mnaft_core._files import sort_safetensors_metadata
from mnaft_core.models.adapters import neuron_sites
from mnaft_core.models.processor import save_processor
from mnaft_core.selection.mask import NeuronMask

DELTA_FORMAT = "mnaft-neuron-delta/1"
CARD = "README.md"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def model_card(
    *,
    base_model: str,
    method: str,
    mask_ref: str = "",
    data_ref: str = "",
    scores: dict[str, Any] | None = None,
    dtype: str = "",
    processor_class: str = "",
) -> str:
    """A Hugging Face model card (YAML front matter + Markdown), as the HF Trainer and peft write one."""
    hub_base = base_model if "/" in base_model and not Path(base_model).exists() else ""
    front = ["---", "library_name: transformers", "pipeline_tag: image-text-to-text", "tags:", "- mnaft"]
    front += [f"- {method}"] + ([f"base_model: {hub_base}"] if hub_base else []) + ["---", ""]
    rows = [
        ("base model", base_model),
        ("method", method),
        ("mask (select artifact)", mask_ref or "none"),
        ("data (data artifact)", data_ref or "not recorded"),
        ("weights dtype", dtype),
        ("processor", processor_class),
    ]
    body = [
        f"# {method} fine-tune of {base_model}",
        "",
        "Image translation (translating the text shown in an image), fine-tuned with the mnaft pipeline.",
        "",
        "| field | value |",
        "| --- | --- |",
        *(f"| {k} | `{v}` |" for k, v in rows if v),
        "",
        "## Scores",
        "",
    ]
    if scores:
        body += [
            "| metric | value |",
            "| --- | --- |",
            *(f"| {k} | {v} |" for k, v in sorted(scores.items())),
        ]
    else:
        body.append("No evaluation scores were known when this checkpoint was written.")
    body += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        'processor = AutoProcessor.from_pretrained("PATH")',
        'model = AutoModelForImageTextToText.from_pretrained("PATH")',
        "```",
        "",
    ]
    return "\n".join(front + body)


def save_checkpoint(
    model: nn.Module,
    processor: Any,
    folder: Path,
    *,
    dtype: torch.dtype | None,
    card: dict[str, Any],
) -> str:
    """Save ``model`` in ``dtype`` (None: its own) and ``processor`` as a standard checkpoint with a model
    card from ``card`` (``model_card``'s fields); returns the processor class named. The live model is left
    as it is (other ranks compare their weights with it); only the saved copy is cast."""
    folder = Path(folder)
    own = next(model.parameters()).dtype
    dtype = dtype or own
    state: dict[str, torch.Tensor] | None = None
    if dtype != own:
        cast: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}  # tied tensors stay one tensor
        state = {}
        for name, t in model.state_dict().items():
            memo = (t.data_ptr(), tuple(t.shape))
            if memo not in cast:
                cast[memo] = t.to(dtype) if t.is_floating_point() else t
            state[name] = cast[memo]
    model.save_pretrained(folder, state_dict=state)  # type: ignore[operator]
    config: Any = model.config
    config.dtype = str(dtype).removeprefix("torch.")  # save_pretrained recorded the live model's dtype
    config.save_pretrained(folder)
    config.dtype = str(own).removeprefix("torch.")
    processor_class = save_processor(processor, folder)
    text = model_card(**card, dtype=config_dtype(folder), processor_class=processor_class)
    (folder / CARD).write_text(text)
    return processor_class


def config_dtype(folder: Path) -> str:
    return str(json.loads((Path(folder) / "config.json").read_text()).get("dtype", ""))


def export_dtype(spec: str, saved: torch.dtype | None) -> torch.dtype | None:
    """``FinetuneConfig.save_dtype`` -> a dtype: "base" is the base checkpoint's dtype on disk."""
    return saved if spec == "base" else _DTYPES[spec]


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
