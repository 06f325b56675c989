"""A profile split into parts (one flow run each, disjoint shards of one Zarr store) equals the whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from flows.stages import data_flow, profile_flow
from mnaft_core.config import PipelineConfig
from mnaft_core.profiling.zarr_stats import condition_totals
from storage import ArtifactStore
from tasks.profile import STATS_DIR, profile_part
from tests.flows.test_pipeline import config  # noqa: F401  (the tiny pipeline's config fixture)


@pytest.mark.usefixtures("prefect_harness")
def test_parts_fill_one_store_and_publish_the_same_profile(
    config: PipelineConfig,  # noqa: F811
    tmp_path: Path,
) -> None:
    whole_store, parts_store = str(tmp_path / "whole"), str(tmp_path / "parts")
    stores = {}
    for store, parts in ((whole_store, 1), (parts_store, 3)):
        data_key = data_flow(config.data, store)
        key = profile_flow(config.model_copy(update={"store": store}), parts=parts)
        stats = ArtifactStore(store).open("profile", key).local_path(STATS_DIR)
        stores[parts] = zarr.open_group(str(stats), mode="r")
    assert (
        ArtifactStore(parts_store).manifests("profile")[0].key
        == ArtifactStore(whole_store).manifests("profile")[0].key
    )  # parts do not change what the profile is
    for module in ("vision", "language"):
        one, three = condition_totals(stores[1], module), condition_totals(stores[3], module)
        for c in one:
            np.testing.assert_allclose(one[c].sum, three[c].sum, rtol=1e-6)
            np.testing.assert_array_equal(one[c].tokens, three[c].tokens)
    # parts of a finished profile have nothing left to do; bad parts and object stores are refused
    assert profile_part(config.model, config.profile, data_key, parts_store, 0, 3) == []
    with pytest.raises(ValueError, match=r"part 3 is not in 0\.\.2"):
        profile_part(config.model, config.profile, data_key, parts_store, 3, 3)
    with pytest.raises(ValueError, match="profiling in parts needs a store folder"):
        profile_part(config.model, config.profile, data_key, "memory://mnaft-parts", 0, 2)
