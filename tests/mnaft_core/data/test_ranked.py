"""`RankedRefs`: the first `cap` records per group in key order, the same whether spilled or not."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mnaft_core.data.ranked import RankedRefs, RankedSeq
from mnaft_core.data.types import TextPair


def _items(n: int, seed: int) -> list[tuple[tuple[str, str], tuple[float, str, str], TextPair]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        u = rng.choice([0.25, 0.5, rng.random()])  # many equal keys: ties keep arrival order
        text = rng.choice(["a", "b", f"t{i}"])
        key = (u, text, rng.choice(["", "f:1"]))
        out.append(((rng.choice(["en-zh", "zh-en"]), rng.choice(["train", "test"])), key,
                    TextPair("en", "zh", text, f"tgt{i}", "x", where=f"rec{i}")))  # fmt: skip
    return out


@pytest.mark.parametrize(("limit", "fan_in", "cap"), [(7, 2, 10_000), (7, 2, 13), (50, 3, 40), (1, 2, 5)])
def test_spilled_groups_equal_a_stable_sort_of_everything(
    tmp_path: Path, limit: int, fan_in: int, cap: int
) -> None:
    items = _items(600, seed=limit + cap)
    refs = RankedRefs(tmp_path, limit=limit, fan_in=fan_in)
    for group, key, pair in items:
        refs.add(group, key, pair, cap)
        assert refs.held < max(limit, 1) + 1  # memory bound: never more than `limit` references held
    assert refs.spills > 0 and any(tmp_path.iterdir())
    for group in refs.groups:
        want = sorted(((k, p) for g, k, p in items if g == group), key=lambda kv: kv[0])[:cap]
        n, stream = refs.first(group)
        assert n == len(want)
        assert list(stream()) == want and list(stream()) == want  # re-openable
        seq = RankedSeq([stream], n)
        assert list(seq) == [p for _, p in want]
        assert list(seq[3:9]) == [p for _, p in want[3:9]] and len(seq[3:9]) == len(want[3:9])
        assert list(seq[2:][1:4]) == [p for _, p in want[3:6]] and seq[-1] == want[-1][1]
    refs.close()
    assert not any(tmp_path.iterdir())


def test_without_a_spill_folder_nothing_goes_to_disk(tmp_path: Path) -> None:
    refs = RankedRefs(None, limit=3)
    for group, key, pair in _items(50, seed=1):
        refs.add(group, key, pair, 100)
    assert refs.spills == 0 and refs.held == 50
    assert sum(refs.first(g)[0] for g in refs.groups) == 50
