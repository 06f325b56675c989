"""The first `cap` image records of each (direction, split) in rank-key order, in bounded memory.

The data stage writes, per direction and split, the first `cap` records of a published dataset by a
salted hash of their source text. With small caps that fits in memory: a group's buffer is pruned to
its first `cap` as it grows. Without caps ("all rows") it would hold a reference to every record
(~1.6 KB each), so `RankedRefs` holds at most `SPILL_AT` references in memory over all groups, and past
that sorts each group's buffer and writes it as a run file into a spill folder (an external merge
sort). Runs are merged `FAN_IN` at a time into one run of the next level, so a group has few runs
however many records there are; reading a group back is a k-way merge of its runs, one chunk of each
in memory.

Every step is stable (equal keys keep arrival order), so the order is exactly that of Python's
`sorted` over all records, whatever was spilled: the dataset written is the same as with everything in
memory (tests/flows/test_published_data.py builds one both ways and compares the files' bytes).
"""

from __future__ import annotations

import heapq
import itertools
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import overload

from mnaft_core.data.types import TextPair

RankKey = tuple[float, str, str]
Item = tuple[RankKey, TextPair]
Stream = Callable[[], Iterator[Item]]

SPILL_AT = 8192  # references held in memory over all groups before they go to disk
FAN_IN = 16  # runs of one level merged into one run of the next
CHUNK = 128  # items per pickle in a run file: what one open run holds in memory while merged
_key = itemgetter(0)


def keep_first(items: list[Item], cap: int) -> list[Item]:
    """The first ``cap`` items by key (a stable sort: equal keys in arrival order)."""
    return sorted(items, key=_key)[:cap]


def merged(streams: Sequence[Stream]) -> Iterator[Item]:
    """A stable merge of sorted streams: of equal keys, the earlier stream's item comes first."""
    its = [s() for s in streams]
    return its[0] if len(its) == 1 else heapq.merge(*its, key=_key)


def _write_run(path: Path, items: Iterable[Item]) -> int:
    n = 0
    with path.open("wb") as f:
        it = iter(items)
        while chunk := list(itertools.islice(it, CHUNK)):
            pickle.dump(chunk, f, protocol=pickle.HIGHEST_PROTOCOL)
            n += len(chunk)
    return n


def _read_run(path: Path) -> Iterator[Item]:
    with path.open("rb") as f:
        while True:
            try:
                chunk = pickle.load(f)  # our own file, written above
            except EOFError:
                return
            yield from chunk


@dataclass
class _Run:
    path: Path
    level: int
    count: int


@dataclass
class _Group:
    cap: int
    buf: list[Item] = field(default_factory=list)
    runs: list[_Run] = field(default_factory=list)  # oldest first; levels never increase along it


class RankedRefs:
    """Collects (key, record) per group and gives back each group's first `cap` in key order.

    ``spill_parent``: where the spill folder is made (on the first spill; None: never spill). Call
    ``close()`` when the groups' streams are no longer read: it removes the folder.
    """

    def __init__(
        self, spill_parent: Path | None, limit: int | None = None, fan_in: int | None = None
    ) -> None:
        self.spill_parent = spill_parent
        self.limit = SPILL_AT if limit is None else limit
        self.fan_in = max(2, FAN_IN if fan_in is None else fan_in)
        self.groups: dict[tuple[str, str], _Group] = {}
        self.held = 0
        self.spills = 0  # how many times the buffers went to disk
        self._dir: Path | None = None
        self._names = itertools.count()

    def add(self, group: tuple[str, str], key: RankKey, pair: TextPair, cap: int) -> None:
        g = self.groups.get(group)
        if g is None:
            g = self.groups[group] = _Group(cap)
        g.buf.append((key, pair))
        self.held += 1
        if len(g.buf) >= cap + cap // 4 + 64:  # prune: only the first `cap` can be written
            self.held -= len(g.buf)
            g.buf = keep_first(g.buf, cap)
            self.held += len(g.buf)
        if self.spill_parent is not None and self.held >= self.limit:
            self.spill()

    def spill(self) -> None:
        """Every group's buffer, sorted and cut to its cap, into a run file."""
        for g in self.groups.values():
            self._spill_group(g)
        self.held = 0
        self.spills += 1

    def _spill_group(self, g: _Group) -> None:
        if not g.buf:
            return
        items, g.buf = keep_first(g.buf, g.cap), []
        g.runs.append(self._write(items, 0))
        while True:  # runs of one level, FAN_IN of them: one run of the next level
            level = g.runs[-1].level
            k = next((k for k in range(len(g.runs)) if g.runs[-1 - k].level != level), len(g.runs))
            if k < self.fan_in:
                return
            tail = g.runs[-k:]
            streams = [partial(_read_run, r.path) for r in tail]
            g.runs[-k:] = [self._write(itertools.islice(merged(streams), g.cap), level + 1)]
            for r in tail:
                r.path.unlink()

    def _write(self, items: Iterable[Item], level: int) -> _Run:
        if self._dir is None:
            assert self.spill_parent is not None
            self._dir = Path(tempfile.mkdtemp(prefix=".spill-", dir=self.spill_parent))
        path = self._dir / f"run-{next(self._names):09d}.pkl"
        return _Run(path, level, _write_run(path, items))

    def first(self, group: tuple[str, str]) -> tuple[int, Stream]:
        """How many records the group writes (at most its cap) and a stream of them, re-openable."""
        g = self.groups.get(group)
        if g is None:
            return 0, partial(iter, ())
        if not g.runs:
            g.buf = keep_first(g.buf, g.cap)
            return len(g.buf), partial(iter, g.buf)
        self._spill_group(g)
        n = min(sum(r.count for r in g.runs), g.cap)
        streams = [partial(_read_run, r.path) for r in g.runs]
        return n, lambda: itertools.islice(merged(streams), n)

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class RankedSeq(Sequence[TextPair]):
    """Records ``start..stop`` of a stable merge of sorted streams: re-iterable, and its slices are
    views, so a plan's candidates need not be in memory."""

    def __init__(self, streams: list[Stream], stop: int, start: int = 0) -> None:
        self.streams, self.start, self.stop = streams, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[TextPair]:
        return (p for _, p in itertools.islice(merged(self.streams), self.start, self.stop))

    @overload
    def __getitem__(self, i: int) -> TextPair: ...
    @overload
    def __getitem__(self, i: slice) -> RankedSeq: ...
    def __getitem__(self, i: int | slice) -> TextPair | RankedSeq:
        if isinstance(i, slice):
            a, b, step = i.indices(len(self))
            if step != 1:
                raise ValueError("RankedSeq slices have step 1")
            return RankedSeq(self.streams, self.start + max(a, b), self.start + a)
        j = i + len(self) if i < 0 else i
        if not 0 <= j < len(self):
            raise IndexError(i)
        return next(iter(self[j : j + 1]))
