"""The profile's Zarr v3 layout: per-shard statistics, written as whole chunks, resumable.

::

    stats.zarr/                       attrs: fingerprint, data_key, conditions, groups, sites, templates
      <module>/                       vision | language; attrs: layers, neurons, site paths
        tokens        (shard, group)                  float64   chunks (1, G)
        active|sum|sumsq|taylor
                      (shard, group, layer, neuron)   float64   chunks (1, G, L, N)
        condition     (shard,)                        int32     which condition the shard profiled
        sample_mean   (shard, sample, layer, neuron)  float16   chunks (1, S, L, N); optional: per-sample
                                                              mean activation, NaN where no sample
      done            (shard,)                        uint8     chunks (1,): 1 once the shard is written

A *shard* is one condition over one slice of the samples. Each shard owns whole chunks, so any number
of workers profiling disjoint shards write into one store without touching each other's chunks
(partial writes into a shared chunk would lose data). ``done`` is written last, per shard: a run killed
mid-shard leaves ``done == 0`` there and the resumed run redoes exactly that shard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from mnaft_core.profiling.stats import GROUPS, STATS, HostStats


@dataclass(frozen=True)
class Condition:
    """One profiling condition: a direction and the modality the source arrives in."""

    src: str
    tgt: str
    modality: str  # "image" (instruction + image) or "text" (instruction + source text)

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}:{self.modality}"


@dataclass(frozen=True)
class ModuleShape:
    layers: int
    neurons: int
    sites: tuple[str, ...]


def create_layout(
    path: str | Path,
    conditions: Sequence[Condition],
    shard_conditions: Sequence[int],
    modules: Mapping[str, ModuleShape],
    attrs: Mapping[str, Any],
    sample_slots: int = 0,
) -> zarr.Group:
    """Create (or reopen, if it matches) the store for ``len(shard_conditions)`` shards.

    ``sample_slots > 0`` adds the per-sample means (that many samples per shard); ``attrs["sample_ids"]``
    should then name each shard's samples.
    """
    n = len(shard_conditions)
    g = len(GROUPS)
    meta = {
        **attrs,
        "conditions": [
            {"src": c.src, "tgt": c.tgt, "modality": c.modality, "name": c.name} for c in conditions
        ],
        "groups": list(GROUPS),
        "modules": {
            m: {"layers": s.layers, "neurons": s.neurons, "sites": list(s.sites)} for m, s in modules.items()
        },
        "shards": n,
        "sample_slots": sample_slots,
    }
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    if "done" in root:
        existing = dict(root.attrs)
        for k in ("conditions", "modules", "shards", "fingerprint", "data_key", "sample_slots"):
            if existing.get(k) != meta.get(k):
                raise ValueError(f"{path}: existing profile store differs in {k!r}; refusing to mix profiles")
        return root
    root.attrs.update(meta)
    for m, s in modules.items():
        grp = root.create_group(m)
        grp.attrs.update({"layers": s.layers, "neurons": s.neurons, "sites": list(s.sites)})
        grp.create_array(
            "tokens", shape=(n, g), chunks=(1, g), dtype="float64", dimension_names=["shard", "group"]
        )
        for name in STATS:
            grp.create_array(
                name,
                shape=(n, g, s.layers, s.neurons),
                chunks=(1, g, s.layers, s.neurons),
                dtype="float64",
                dimension_names=["shard", "group", "layer", "neuron"],
            )
        cond = grp.create_array(
            "condition", shape=(n,), chunks=(n,), dtype="int32", dimension_names=["shard"]
        )
        cond[:] = np.asarray(shard_conditions, dtype=np.int32)
        if sample_slots:
            grp.create_array(
                "sample_mean",
                shape=(n, sample_slots, s.layers, s.neurons),
                chunks=(1, sample_slots, s.layers, s.neurons),
                dtype="float16",
                fill_value=np.nan,
                dimension_names=["shard", "sample", "layer", "neuron"],
            )
    root.create_array("done", shape=(n,), chunks=(1,), dtype="uint8", dimension_names=["shard"], fill_value=0)
    return root


def _array(group: zarr.Group, name: str) -> zarr.Array:
    arr = group[name]
    if not isinstance(arr, zarr.Array):
        raise ValueError(f"{group.store_path}/{name}: expected an array, found a group")
    return arr


def _group(root: zarr.Group, name: str) -> zarr.Group:
    grp = root[name]
    if not isinstance(grp, zarr.Group):
        raise ValueError(f"{root.store_path}/{name}: expected a group, found an array")
    return grp


def pending_shards(root: zarr.Group) -> list[int]:
    done = np.asarray(_array(root, "done")[:])
    return [int(i) for i in np.flatnonzero(done == 0)]


def write_shard(
    root: zarr.Group,
    shard: int,
    stats: Mapping[str, HostStats],
    sample_means: Mapping[str, NDArray[np.float16]] | None = None,
) -> None:
    """Write one shard's statistics (whole chunks), then mark it done."""
    for module, st in stats.items():
        grp = _group(root, module)
        _array(grp, "tokens")[shard] = st.tokens
        for name in STATS:
            _array(grp, name)[shard] = getattr(st, name)
    for module, means in (sample_means or {}).items():
        _array(_group(root, module), "sample_mean")[shard] = means
    _array(root, "done")[shard] = 1


def condition_totals(root: zarr.Group, module: str) -> dict[int, HostStats]:
    """Sum the finished shards of each condition; refuses an unfinished store."""
    if pending := pending_shards(root):
        raise ValueError(
            f"profile has {len(pending)} unfinished shards (first: {pending[:5]}); resume profiling first"
        )
    grp = _group(root, module)
    cond: NDArray[np.int32] = np.asarray(_array(grp, "condition")[:])
    out: dict[int, HostStats] = {}
    arrays = {name: np.asarray(_array(grp, name)[:]) for name in ("tokens", *STATS)}
    for c in np.unique(cond).tolist():
        sel = cond == c
        out[int(c)] = HostStats(*(arrays[name][sel].sum(axis=0) for name in ("tokens", *STATS)))
    return out


@dataclass(frozen=True)
class SampleMeans:
    """Per-sample mean activations of chosen neurons of one module, with each sample's id and language."""

    means: NDArray[np.float32]  # (samples, chosen neurons), in the order of the ``neurons`` argument
    ids: list[str]
    languages: list[str]  # the source language: what the text in the image (or the given text) is in
    modalities: list[str]


def sample_means(root: zarr.Group, module: str, neurons: Mapping[int, Sequence[int]]) -> SampleMeans:
    """Per-sample means of ``neurons`` (layer -> neuron indices) of ``module``, read one layer at a time.

    Samples the module never saw (the vision tower in a text condition) and unfinished shards are left out.
    """
    attrs: dict[str, Any] = dict(root.attrs)
    if not attrs.get("sample_slots"):
        raise ValueError("this profile has no per-sample means (profile with sample_means: true)")
    grp = _group(root, module)
    arr = _array(grp, "sample_mean")
    n_shards, n_slots, n_layers, _ = arr.shape
    cols = []
    for layer, idx in sorted(neurons.items()):
        if not 0 <= layer < n_layers:
            raise ValueError(f"{module}: layer {layer} out of range 0..{n_layers - 1}")
        cols.append(np.asarray(arr[:, :, layer, :], dtype=np.float32)[:, :, np.asarray(idx, dtype=np.int64)])
    block = np.concatenate(cols, axis=-1) if cols else np.zeros((n_shards, n_slots, 0), np.float32)
    cond = np.asarray(_array(grp, "condition")[:])
    done = np.asarray(_array(root, "done")[:])
    rows, ids, langs, mods = [], [], [], []
    for shard, shard_ids in enumerate(attrs["sample_ids"]):
        if not done[shard]:
            continue
        c = attrs["conditions"][int(cond[shard])]
        for slot, sid in enumerate(shard_ids):
            if block.shape[-1] and np.isnan(block[shard, slot]).all():
                continue
            rows.append(block[shard, slot])
            ids.append(sid)
            langs.append(c["src"])
            mods.append(c["modality"])
    means = np.stack(rows) if rows else np.zeros((0, block.shape[-1]), np.float32)
    return SampleMeans(means, ids, langs, mods)
