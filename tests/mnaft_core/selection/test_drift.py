"""Mask drift: per-site Jaccard overlap, sites present in only one mask, and the report table."""

from __future__ import annotations

import numpy as np

from mnaft_core.selection.drift import drift_markdown, mask_drift
from mnaft_core.selection.mask import NeuronMask, SiteMask


def _mask(sites: dict[str, list[int]], specific: dict[str, list[int]] | None = None) -> NeuronMask:
    out = {}
    for i, (path, agnostic) in enumerate(sites.items()):
        spec = {"de": np.array(specific[path], np.int32)} if specific and path in specific else {}
        out[path] = SiteMask("language", i, 16, np.array(agnostic, np.int32), spec)
    return NeuronMask(fingerprint="f", sites=out)


def test_jaccard_per_site() -> None:
    old = _mask({"a": [1, 2, 3], "b": [4]}, specific={"a": [7]})
    new = _mask({"a": [2, 3, 4], "c": [5]}, specific={"a": [7]})
    rows = {r["site"]: r for r in mask_drift(old, new)}
    assert rows["a"]["shared"] == 3 and rows["a"]["old"] == 4 and rows["a"]["new"] == 4
    assert rows["a"]["jaccard"] == 3 / 5  # {2,3,7} of {1,2,3,4,7}
    assert rows["b"]["jaccard"] == 0.0 and rows["b"]["new"] == 0  # dropped site
    assert rows["c"]["jaccard"] == 0.0 and rows["c"]["old"] == 0  # new site


def test_identical_masks_do_not_drift() -> None:
    m = _mask({"a": [1, 5]})
    assert [r["jaccard"] for r in mask_drift(m, m)] == [1.0]
    text = drift_markdown(mask_drift(m, m), "old", "new")
    assert "Overall Jaccard overlap 1.000" in text and "| language | 0 | 2 | 2 | 2 | 1.000 |" in text
