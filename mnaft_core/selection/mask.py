"""The neuron mask: which neurons of which MLPs MNAFT trains, as a safetensors file.

Format (documented in docs/mask-format.md): one int32 tensor per site and class,
``<site path>::agnostic`` and ``<site path>::specific::<lang>``, sorted unique neuron indices; the header
metadata holds the model fingerprint, data key, method, thresholds, and a ``sites`` table mapping each
site path to its module, layer, width and the parameter slices its neurons own. All indices of a site
apply to every parameter of that site (rows of gate/up/fc1 and their biases, columns of down/fc2).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from torch import nn

from mnaft_core._base import canonical_json
from mnaft_core._files import sort_safetensors_metadata
from mnaft_core.models.adapters import MlpSite, neuron_sites

FORMAT = "mnaft-neuron-mask/1"


class MaskError(ValueError):
    """A mask that does not fit the model, or a mask file that cannot be read."""


@dataclass
class SiteMask:
    module: str
    layer: int
    width: int
    agnostic: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    specific: dict[str, NDArray[np.int32]] = field(default_factory=dict)

    def neurons(self, languages: Iterable[str] | None = None) -> NDArray[np.int32]:
        """Agnostic neurons plus the specific neurons of ``languages`` (all languages if None)."""
        langs = (
            self.specific.keys()
            if languages is None
            else [lang for lang in languages if lang in self.specific]
        )
        parts = [self.agnostic, *(self.specific[lang] for lang in langs)]
        return np.unique(np.concatenate(parts)).astype(np.int32)


@dataclass
class NeuronMask:
    fingerprint: str
    sites: dict[str, SiteMask]  # site path -> mask
    method: str = "mnaft"
    data_key: str = ""
    thresholds: dict[str, Any] = field(default_factory=dict)

    @property
    def languages(self) -> list[str]:
        return sorted({lang for s in self.sites.values() for lang in s.specific})

    def counts(self) -> dict[str, dict[str, int]]:
        """Per site: number of agnostic and per-language specific neurons."""
        return {
            path: {
                "agnostic": int(s.agnostic.size),
                **{f"specific:{k}": int(v.size) for k, v in s.specific.items()},
            }
            for path, s in self.sites.items()
        }

    def dense(self, model: nn.Module, languages: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Boolean masks shaped like each owned parameter: for tools that want dense masks."""
        params = dict(model.named_parameters())
        out: dict[str, torch.Tensor] = {}
        for site in neuron_sites(model):
            m = self.sites.get(site.path)
            if m is None:
                continue
            idx = torch.from_numpy(m.neurons(languages).astype(np.int64))
            for name, (_, axis) in site.parameter_slices(model).items():
                d = torch.zeros(params[name].shape, dtype=torch.bool)
                d.index_fill_(axis, idx, True)
                out[name] = d
        return out

    def check(self, model: nn.Module, fingerprint: str | None = None) -> None:
        """Refuse a mask made for another model: fingerprint and every site's width must match."""
        if fingerprint is not None and fingerprint != self.fingerprint:
            raise MaskError(
                f"mask was made for model {self.fingerprint[:16]}, this model is {fingerprint[:16]}: "
                "profile and select on this checkpoint first"
            )
        by_path = {s.path: s for s in neuron_sites(model)}
        for path, m in self.sites.items():
            if path not in by_path:
                raise MaskError(f"mask site {path} does not exist in {type(model).__name__}")
            width = by_path[path].width(model)
            if width != m.width:
                raise MaskError(f"mask site {path} has width {m.width}, the model's MLP has {width}")
            for name, idx in [("agnostic", m.agnostic), *m.specific.items()]:
                if idx.size and (idx.min() < 0 or idx.max() >= width):
                    raise MaskError(f"mask site {path} ({name}) has neuron indices outside [0, {width})")

    def save(self, path: str | Path, model: nn.Module | None = None) -> None:
        tensors: dict[str, NDArray[np.int32]] = {}
        sites_meta: dict[str, Any] = {}
        slices = {s.path: s for s in neuron_sites(model)} if model is not None else {}
        for p, s in self.sites.items():
            if "::" in p:
                raise MaskError(f"site path {p!r} contains '::', which the mask format reserves")
            tensors[f"{p}::agnostic"] = np.ascontiguousarray(s.agnostic, dtype=np.int32)
            for lang, idx in s.specific.items():
                tensors[f"{p}::specific::{lang}"] = np.ascontiguousarray(idx, dtype=np.int32)
            meta: dict[str, Any] = {"module": s.module, "layer": s.layer, "width": s.width}
            if p in slices:
                meta["parameters"] = {k: v[1] for k, v in slices[p].parameter_slices(model).items()}  # type: ignore[arg-type]
            sites_meta[p] = meta
        metadata = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "method": self.method,
            "data_key": self.data_key,
            "thresholds": canonical_json(self.thresholds),
            "sites": canonical_json(sites_meta),
            "counts": canonical_json(self.counts()),
        }
        save_file(tensors, str(path), metadata=metadata)
        sort_safetensors_metadata(Path(path))  # equal masks, equal bytes

    @classmethod
    def load(cls, path: str | Path) -> NeuronMask:
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise MaskError(
                        f"{path}: not a neuron mask (format {meta.get('format')!r}, expected {FORMAT})"
                    )
                sites_meta = json.loads(meta["sites"])
                sites = {
                    p: SiteMask(m["module"], int(m["layer"]), int(m["width"])) for p, m in sites_meta.items()
                }
                for name in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                    p, _, rest = name.partition("::")
                    if p not in sites:
                        raise MaskError(f"{path}: tensor {name} names a site missing from the metadata")
                    arr = np.asarray(f.get_tensor(name), dtype=np.int32)
                    if rest == "agnostic":
                        sites[p].agnostic = arr
                    elif rest.startswith("specific::"):
                        sites[p].specific[rest.removeprefix("specific::")] = arr
                    else:
                        raise MaskError(f"{path}: unexpected tensor {name}")
        except MaskError:
            raise
        except (OSError, KeyError, ValueError, SafetensorError) as err:
            raise MaskError(f"{path}: cannot read neuron mask: {err}") from err
        return cls(
            fingerprint=meta["fingerprint"],
            sites=sites,
            method=meta.get("method", ""),
            data_key=meta.get("data_key", ""),
            thresholds=json.loads(meta.get("thresholds", "{}")),
        )


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the config and every parameter's name, shape and float32 value bytes.

    Identifies a checkpoint by content, so a mask or profile never silently applies to other weights.
    Values are hashed as float32, so a checkpoint loaded in float32 or (losslessly) in bf16/fp16 keeps
    one fingerprint across stages that run in different dtypes.
    """
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None:
        h.update(canonical_json(_config_identity(config.to_dict())).encode())
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        t = p.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _config_identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config minus fields that change with the runtime, not with the model."""
    volatile = {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "_attn_implementation"}
    return {
        k: (_config_identity(v) if isinstance(v, Mapping) else v) for k, v in cfg.items() if k not in volatile
    }


def sites_by_path(model: nn.Module) -> dict[str, MlpSite]:
    return {s.path: s for s in neuron_sites(model)}
