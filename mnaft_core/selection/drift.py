"""How much a mask moved between two checkpoints: per-layer Jaccard overlap of the selected neurons."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnaft_core.selection.mask import NeuronMask


def mask_drift(old: NeuronMask, new: NeuronMask) -> list[dict[str, Any]]:
    """One row per MLP site in either mask: neurons before/after, shared, and their Jaccard overlap.

    A site selected in only one of the masks has overlap 0; a site in neither is not listed.
    """
    rows = []
    for path in sorted(set(old.sites) | set(new.sites)):
        a = old.sites[path].neurons() if path in old.sites else np.zeros(0, np.int32)
        b = new.sites[path].neurons() if path in new.sites else np.zeros(0, np.int32)
        site = new.sites.get(path) or old.sites[path]
        union = np.union1d(a, b).size
        shared = np.intersect1d(a, b).size
        rows.append(
            {
                "site": path,
                "module": site.module,
                "layer": site.layer,
                "old": int(a.size),
                "new": int(b.size),
                "shared": int(shared),
                "jaccard": float(shared / union) if union else 1.0,
            }
        )
    return rows


def drift_markdown(rows: list[dict[str, Any]], old_key: str, new_key: str) -> str:
    """The report a person reads after a re-profile."""
    total_old, total_new = sum(r["old"] for r in rows), sum(r["new"] for r in rows)
    shared = sum(r["shared"] for r in rows)
    union = total_old + total_new - shared
    overall = shared / union if union else 1.0
    lines = [
        f"# Mask drift: `{old_key}` -> `{new_key}`",
        "",
        f"Overall Jaccard overlap {overall:.3f} ({shared} shared of {union} neurons selected in either).",
        "",
        "| module | layer | before | after | shared | Jaccard |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['module']} | {r['layer']} | {r['old']} | {r['new']} | {r['shared']} | {r['jaccard']:.3f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
