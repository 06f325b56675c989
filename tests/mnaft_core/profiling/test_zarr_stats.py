"""Sharded Zarr statistics: disjoint writers, resume, per-condition totals."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
import zarr

from mnaft_core.profiling.stats import HostStats
from mnaft_core.profiling.zarr_stats import (
    Condition,
    ModuleShape,
    ShardWriter,
    condition_totals,
    create_layout,
    pending_shards,
    write_shard,
)

CONDS = [Condition("en", "de", "image"), Condition("en", "de", "text")]
SHARD_COND = [0, 0, 1, 1, 0, 1]
MODULES = {"vision": ModuleShape(2, 5, ("v0", "v1")), "language": ModuleShape(3, 4, ("l0", "l1", "l2"))}


def _stats(shard: int, shape: ModuleShape) -> HostStats:
    rng = np.random.default_rng(shard)
    st = HostStats.zeros(shape.layers, shape.neurons)
    st.tokens[:] = rng.integers(1, 10, 3)
    for name in ("active", "sum", "sumsq", "taylor"):
        getattr(st, name)[:] = rng.random(getattr(st, name).shape)
    return st


def _write(path: str, shards: list[int]) -> None:
    root = zarr.open_group(path, mode="a")
    for s in shards:
        write_shard(root, s, {m: _stats(s, shape) for m, shape in MODULES.items()})


def test_layout_attrs_and_dimension_names(tmp_path: Path) -> None:
    root = create_layout(
        tmp_path / "s.zarr", CONDS, SHARD_COND, MODULES, {"fingerprint": "f", "data_key": "d"}
    )
    assert root.attrs["conditions"][1]["name"] == "en-de:text"
    arr = root["language/stats"]
    assert arr.shape == (6, 4, 3, 3, 4) and arr.chunks == (1, 4, 3, 3, 4)
    assert arr.metadata.dimension_names == ("shard", "stat", "group", "layer", "neuron")
    assert arr.attrs["stats"] == ["active", "sum", "sumsq", "taylor"]
    assert pending_shards(root) == list(range(6))


def test_disjoint_writers_and_totals(tmp_path: Path) -> None:
    path = str(tmp_path / "s.zarr")
    create_layout(path, CONDS, SHARD_COND, MODULES, {"fingerprint": "f", "data_key": "d"})
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write, args=(path, part)) for part in ([0, 2, 4], [1, 3, 5])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    root = zarr.open_group(path, mode="r")
    assert pending_shards(root) == []
    totals = condition_totals(root, "language")
    expect = sum((_stats(s, MODULES["language"]).active for s in (0, 1, 4)), np.zeros((3, 3, 4)))
    np.testing.assert_allclose(totals[0].active, expect)
    np.testing.assert_allclose(
        totals[1].tokens, sum(_stats(s, MODULES["language"]).tokens for s in (2, 3, 5))
    )


def test_resume_redoes_only_unfinished_and_refuses_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    root = create_layout(path, CONDS, SHARD_COND, MODULES, {"fingerprint": "f", "data_key": "d"})
    _write(str(path), [0, 1, 2])
    with pytest.raises(ValueError, match="3 unfinished shards"):
        condition_totals(root, "vision")
    root = create_layout(path, CONDS, SHARD_COND, MODULES, {"fingerprint": "f", "data_key": "d"})
    assert pending_shards(root) == [3, 4, 5]
    with pytest.raises(ValueError, match="differs in 'fingerprint'"):
        create_layout(path, CONDS, SHARD_COND, MODULES, {"fingerprint": "other", "data_key": "d"})


def test_background_writer_keeps_order_finishes_on_error_and_raises_failures(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    root = create_layout(path, CONDS, SHARD_COND, MODULES, {"fingerprint": "f", "data_key": "d"})
    # the block fails after three shards were handed over: all three still land, and nothing else does
    with pytest.raises(RuntimeError, match="forward failed"), ShardWriter(root, max_pending=1) as w:
        for s in (0, 3, 5):
            w.submit(s, {m: _stats(s, shape) for m, shape in MODULES.items()})
        raise RuntimeError("forward failed")
    assert pending_shards(root) == [1, 2, 4]
    np.testing.assert_array_equal(root["language/stats"][3, 1], _stats(3, MODULES["language"]).sum)
    assert w.write_seconds > 0
    # a write that fails (a module the store does not have) is raised, and its shard stays pending
    bad = {"audio": _stats(1, MODULES["vision"])}
    with pytest.raises(KeyError, match="store has no 'audio'"), ShardWriter(root) as w:
        w.submit(1, bad)
    assert pending_shards(root) == [1, 2, 4]
    with pytest.raises(ValueError, match="max_pending must be >= 1"):
        ShardWriter(root, max_pending=0)


def test_a_store_of_the_older_layout_is_refused_not_mixed(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    root = create_layout(path, CONDS, SHARD_COND, MODULES, {"fingerprint": "f", "data_key": "d"})
    attrs = dict(root.attrs)
    del attrs["layout"]  # what a store written before the stats were stacked into one array looks like
    root.attrs.put(attrs)
    with pytest.raises(ValueError, match="differs in 'layout'"):
        create_layout(path, CONDS, SHARD_COND, MODULES, {"fingerprint": "f", "data_key": "d"})
