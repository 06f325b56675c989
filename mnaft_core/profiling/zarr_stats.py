"""The profile's Zarr v3 layout: per-shard statistics, written as whole chunks, resumable.

::

    stats.zarr/                       attrs: fingerprint, data_key, conditions, groups, sites, templates
      <module>/                       vision | language; attrs: layers, neurons, site paths
        tokens        (shard, group)                  float64   chunks (1, G)
        stats         (shard, stat, group, layer, neuron)
                                                      float64   chunks (1, 4, G, L, N); stat: active, sum,
                                                              sumsq, taylor (the array's attrs name them)
        condition     (shard,)                        int32     which condition the shard profiled
        sample_mean   (shard, sample, layer, neuron)  float16   chunks (1, S, L, N); optional: per-sample
                                                              mean activation, NaN where no sample
        gradient      (shard, layer, neuron)          float64   chunks (1, L, N); optional: sum over the
                                                              shard's batches of |dL/dW| over each
                                                              neuron's weight slices (profile.gradient)
      done            (shard,)                        uint8     chunks (1,): 1 once the shard is written

A *shard* is one condition over one slice of the samples. Each shard owns whole chunks, so any number
of workers profiling disjoint shards write into one store without touching each other's chunks
(partial writes into a shared chunk would lose data). ``done`` is written last, per shard: a run killed
mid-shard leaves ``done == 0`` there and the resumed run redoes exactly that shard. The four statistics
share one array because every array costs a write (and a metadata file) of its own per shard: a shard
is three to five chunk writes, issued concurrently. ``ShardWriter`` writes finished shards from a
background thread, so the next shard's forward passes can overlap the I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zarr
import zarr.api.asynchronous
from numpy.typing import NDArray
from zarr.core.sync import sync

from mnaft_core.profiling.stats import GROUPS, STATS, HostStats

LAYOUT_VERSION = 2  # 2: the four statistics in one ``stats`` array per module


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
    gradient: bool = False,
) -> zarr.Group:
    """Create (or reopen, if it matches) the store for ``len(shard_conditions)`` shards.

    ``sample_slots > 0`` adds the per-sample means (that many samples per shard); ``attrs["sample_ids"]``
    should then name each shard's samples. ``gradient`` adds the per-neuron weight-gradient statistic.
    """
    n = len(shard_conditions)
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
        "layout": LAYOUT_VERSION,
        **({"gradient": True} if gradient else {}),
    }
    root = zarr.open_group(str(path), mode="a", zarr_format=3)
    if "done" in root:
        existing = dict(root.attrs)
        keys = ("layout", "conditions", "modules", "shards", "fingerprint", "data_key", "sample_slots",
                "gradient")  # fmt: skip
        for k in keys:
            if existing.get(k) != meta.get(k):
                raise ValueError(f"{path}: existing profile store differs in {k!r}; refusing to mix profiles")
        return root
    root.attrs.update(meta)
    conds = np.asarray(shard_conditions, dtype=np.int32)
    sync(_create_arrays(str(path), conds, modules, sample_slots, gradient))
    return root


async def _create_arrays(
    path: str,
    shard_conditions: NDArray[np.int32],
    modules: Mapping[str, ModuleShape],
    slots: int,
    gradient: bool = False,
) -> None:
    """Every module's arrays, created concurrently (each is a metadata write); ``done`` last of all."""
    root = await zarr.api.asynchronous.open_group(store=path, mode="a", zarr_format=3)
    n, g = len(shard_conditions), len(GROUPS)
    made: list[Any] = []
    for m, s in modules.items():
        grp = await root.create_group(m, attributes={"layers": s.layers, "neurons": s.neurons,
                                                     "sites": list(s.sites)})  # fmt: skip
        per_layer = (s.layers, s.neurons)
        made += [
            grp.create_array("tokens", shape=(n, g), chunks=(1, g), dtype="float64",
                             dimension_names=["shard", "group"]),
            grp.create_array("stats", shape=(n, len(STATS), g, *per_layer),
                             chunks=(1, len(STATS), g, *per_layer), dtype="float64",
                             dimension_names=["shard", "stat", "group", "layer", "neuron"],
                             attributes={"stats": list(STATS)}),
            grp.create_array("condition", shape=(n,), chunks=(n,), dtype="int32",
                             dimension_names=["shard"]),
        ]  # fmt: skip
        if slots:
            made.append(
                grp.create_array("sample_mean", shape=(n, slots, *per_layer), chunks=(1, slots, *per_layer),
                                 dtype="float16", fill_value=np.nan,
                                 dimension_names=["shard", "sample", "layer", "neuron"])
            )  # fmt: skip
        if gradient:
            made.append(
                grp.create_array("gradient", shape=(n, *per_layer), chunks=(1, *per_layer), dtype="float64",
                                 dimension_names=["shard", "layer", "neuron"])
            )  # fmt: skip
    arrays = await asyncio.gather(*made)
    await asyncio.gather(
        *(a.setitem(slice(None), shard_conditions) for a in arrays if a.basename == "condition")
    )
    await root.create_array("done", shape=(n,), chunks=(1,), dtype="uint8", dimension_names=["shard"],
                            fill_value=0)  # fmt: skip


def _node(group: zarr.Group, name: str) -> Any:
    try:
        return group[name]
    except KeyError as err:
        raise KeyError(f"{group.store_path}: this profile store has no {name!r}") from err


def _array(group: zarr.Group, name: str) -> zarr.Array:
    arr = _node(group, name)
    if not isinstance(arr, zarr.Array):
        raise ValueError(f"{group.store_path}/{name}: expected an array, found a group")
    return arr


def _group(root: zarr.Group, name: str) -> zarr.Group:
    grp = _node(root, name)
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
    _ShardArrays(root).write(shard, stats, sample_means)


class _ShardArrays:
    """The store's array handles, opened once (opening one re-reads its metadata from the store)."""

    def __init__(self, root: zarr.Group):
        self.root = root
        self.done = _array(root, "done")
        self.modules: dict[str, dict[str, zarr.Array]] = {}

    def _module(self, module: str) -> dict[str, zarr.Array]:
        if module not in self.modules:
            grp = _group(self.root, module)
            optional = tuple(n for n in ("sample_mean", "gradient") if n in grp)
            names = ("tokens", "stats", *optional)
            self.modules[module] = {name: _array(grp, name) for name in names}
        return self.modules[module]

    def write(
        self,
        shard: int,
        stats: Mapping[str, HostStats],
        sample_means: Mapping[str, NDArray[np.float16]] | None = None,
    ) -> None:
        writes: list[tuple[zarr.Array, NDArray[Any]]] = []
        for module, st in stats.items():
            arrays = self._module(module)
            writes += [(arrays["tokens"], st.tokens), (arrays["stats"], st.stacked())]
            if ("gradient" in arrays) != (st.gradient is not None):
                has = "keeps" if "gradient" in arrays else "keeps no"
                raise ValueError(f"{self.root.store_path}/{module}: this profile {has} gradient statistic")
            if st.gradient is not None:
                writes.append((arrays["gradient"], st.gradient))
        for module, means in (sample_means or {}).items():
            if "sample_mean" not in (arrays := self._module(module)):
                raise ValueError(f"{self.root.store_path}/{module}: this profile keeps no per-sample means")
            writes.append((arrays["sample_mean"], means))

        async def write_all() -> None:  # the shard's chunks concurrently (each is its own file/object)
            await asyncio.gather(*(arr.async_array.setitem(shard, value) for arr, value in writes))

        sync(write_all())
        self.done[shard] = 1  # only once every chunk of the shard is stored


class ShardWriter:
    """Writes finished shards in submission order from one background thread; use as a context manager.

    The caller hands over host copies (``flush`` makes them), so the next shard can accumulate while this
    one is written; at most ``max_pending`` shards wait in memory (a slow store holds the caller back
    instead of filling the host's memory). Each shard's ``done`` flag is still written after its data;
    leaving the block waits for every submitted shard, also when the block fails, so finished work is
    never dropped. A failed write is raised at the next ``submit`` or on leaving the block.
    """

    def __init__(self, root: zarr.Group, max_pending: int = 2):
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self._arrays = _ShardArrays(root)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mnaft-zarr")
        self._pending: list[Future[None]] = []
        self.write_seconds = 0.0  # spent writing, in the background thread
        self.wait_seconds = 0.0  # spent by the caller waiting for writes to finish

    def _write(self, shard: int, stats: Mapping[str, HostStats], means: Any) -> None:
        t0 = time.perf_counter()
        self._arrays.write(shard, stats, means)
        self.write_seconds += time.perf_counter() - t0

    def _reap(self) -> None:
        finished = [f for f in self._pending if f.done()]  # one look: a write may finish meanwhile
        self._pending = [f for f in self._pending if f not in finished]
        for f in finished:
            f.result()  # re-raises a failed write

    def submit(
        self,
        shard: int,
        stats: Mapping[str, HostStats],
        sample_means: Mapping[str, NDArray[np.float16]] | None = None,
    ) -> None:
        self._reap()
        if len(self._pending) >= self.max_pending:
            t0 = time.perf_counter()
            self._pending.pop(0).result()
            self.wait_seconds += time.perf_counter() - t0
        self._pending.append(self._pool.submit(self._write, shard, stats, sample_means))

    def wait(self) -> None:
        t0 = time.perf_counter()
        try:
            for f in self._pending:
                f.result()
        finally:
            self._pending = [f for f in self._pending if not f.done()]
            self.wait_seconds += time.perf_counter() - t0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def condition_totals(root: zarr.Group, module: str) -> dict[int, HostStats]:
    """Sum the finished shards of each condition; refuses an unfinished store."""
    if pending := pending_shards(root):
        raise ValueError(
            f"profile has {len(pending)} unfinished shards (first: {pending[:5]}); resume profiling first"
        )
    grp = _group(root, module)
    cond: NDArray[np.int32] = np.asarray(_array(grp, "condition")[:])
    out: dict[int, HostStats] = {}
    tokens = np.asarray(_array(grp, "tokens")[:])
    stats = np.asarray(_array(grp, "stats")[:])  # (shard, stat, group, layer, neuron)
    gradient = np.asarray(_array(grp, "gradient")[:]) if "gradient" in grp else None
    for c in np.unique(cond).tolist():
        sel = cond == c
        active, total, sumsq, taylor = stats[sel].sum(axis=0)
        grad = gradient[sel].sum(axis=0) if gradient is not None else None
        out[int(c)] = HostStats(tokens[sel].sum(axis=0), active, total, sumsq, taylor, grad)
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
