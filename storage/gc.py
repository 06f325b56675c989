"""Garbage collection: keep what the roots need, plan the rest for deletion.

Roots are the named refs, explicitly kept keys, and the newest ``keep_latest`` artifacts of each stage.
Everything a kept artifact depends on (its manifest inputs, transitively) is kept too, so deleting never
breaks the lineage of something kept.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from storage.manifest import Manifest
from storage.store import ArtifactStore


@dataclass
class GcPlan:
    keep: list[Manifest] = field(default_factory=list)
    delete: list[Manifest] = field(default_factory=list)
    debris: list[str] = field(default_factory=list)
    missing_inputs: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(m.total_bytes for m in self.delete)


def plan_gc(
    store: ArtifactStore, keep_keys: Iterable[str] = (), keep_latest: int = 1, debris_age_s: float = 3600.0
) -> GcPlan:
    manifests = store.manifests()
    by_key = {m.key: m for m in manifests}
    roots: set[str] = {key for _, key in store.refs().values()}
    for k in keep_keys:
        roots.add(store.resolve(k).key)
    per_stage: dict[str, list[Manifest]] = defaultdict(list)
    for m in manifests:
        per_stage[m.stage].append(m)
    for items in per_stage.values():
        roots.update(m.key for m in items[-keep_latest:] if keep_latest > 0)

    kept: set[str] = set()
    missing: list[str] = []
    todo = list(roots)
    while todo:
        key = todo.pop()
        if key in kept:
            continue
        if key not in by_key:
            missing.append(key)
            continue
        kept.add(key)
        todo.extend(by_key[key].inputs.values())
    return GcPlan(
        keep=[m for m in manifests if m.key in kept],
        delete=[m for m in manifests if m.key not in kept],
        debris=store.debris(older_than_s=debris_age_s),
        missing_inputs=sorted(set(missing)),
    )


def run_gc(store: ArtifactStore, plan: GcPlan) -> None:
    for m in plan.delete:
        store.delete(m.stage, m.key)
    for path in plan.debris:
        store.remove_path(path)
