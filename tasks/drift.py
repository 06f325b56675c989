"""Mask drift after a re-profile: per-layer Jaccard overlap of the new mask with the previous one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from mnaft_core.selection.drift import drift_markdown, mask_drift
from mnaft_core.selection.from_profile import MASK_FILE
from mnaft_core.selection.mask import NeuronMask
from storage import ArtifactStore
from tasks._stage import publish, stage_key, store_cache

STAGE = "drift"


def drift_key(old_mask: str, new_mask: str, store: str = "") -> str:
    return stage_key(STAGE, {}, {"old": old_mask, "new": new_mask}, __name__)


def build_drift(old_mask: str, new_mask: str, store: str) -> str:
    st = ArtifactStore(store)

    def build(out: Path) -> dict[str, Any]:
        old = NeuronMask.load(st.open("select", old_mask).local_path(MASK_FILE))
        new = NeuronMask.load(st.open("select", new_mask).local_path(MASK_FILE))
        rows = mask_drift(old, new)
        (out / "drift.json").write_text(json.dumps(rows, indent=1))
        (out / "drift.md").write_text(drift_markdown(rows, old_mask, new_mask))
        shared, old_n, new_n = (sum(r[k] for r in rows) for k in ("shared", "old", "new"))
        union = old_n + new_n - shared
        return {"jaccard": shared / union if union else 1.0, "sites": len(rows)}

    inputs = {"old": old_mask, "new": new_mask}
    key = drift_key(old_mask, new_mask)
    return publish(store, STAGE, key, params={}, inputs=inputs, module=__name__, build=build)


@task(name="drift", cache_key_fn=store_cache(STAGE, drift_key), persist_result=True, result_serializer="json")
def drift_task(old_mask: str, new_mask: str, store: str) -> str:
    """Compare two masks layer by layer; the report is a store artifact and a Prefect Markdown artifact."""
    key = build_drift(old_mask, new_mask, store)
    art = ArtifactStore(store).open(STAGE, key)
    create_markdown_artifact(key="mask-drift", markdown=art.read_bytes("drift.md").decode(), description=key)
    return key
