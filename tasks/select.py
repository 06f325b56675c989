"""The select stage: profile -> neuron/layer tables (Parquet), the neuron mask (safetensors), pictures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import zarr
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnaft_core.selection.from_profile import select_from_profile, write_selection
from mnaft_core.selection.select import SelectConfig
from mnaft_core.selection.specificity import specificity_markdown
from storage import ArtifactStore
from tasks._stage import inputs_markdown, publish, show_pictures, stage_key, store_cache
from tasks.profile import STATS_DIR

STAGE = "select"


def select_key(cfg: SelectConfig, profile_key: str, store: str = "") -> str:
    return stage_key(STAGE, cfg, {"profile": profile_key}, __name__)


def build_select(cfg: SelectConfig, profile_key: str, store: str) -> str:
    st = ArtifactStore(store)

    def build(out: Path) -> dict[str, Any]:
        stats = st.open("profile", profile_key).local_dir() / STATS_DIR
        root = zarr.open_group(str(stats), mode="r")
        summary = write_selection(select_from_profile(root, cfg), out, root)
        keys = ("method", "sites", "neurons", "selected_layers", "specificity", "overlap")
        return {k: summary[k] for k in keys}

    key = select_key(cfg, profile_key)
    return publish(store, STAGE, key, params=cfg.model_dump(mode="json"), inputs={"profile": profile_key},
                   module=__name__, build=build)  # fmt: skip


@task(
    name="select", cache_key_fn=store_cache(STAGE, select_key), persist_result=True, result_serializer="json"
)
def select_task(cfg: SelectConfig, profile_key: str, store: str) -> str:
    """Classify neurons, rank layers, and write the mask."""
    key = build_select(cfg, profile_key, store)
    art = ArtifactStore(store).open(STAGE, key)
    layers = pl.read_parquet(art.open("layers.parquet"))
    view = layers.select(
        "module", "layer", "n_specific_lape", "n_agnostic_lape", "n_trained", "rank", "selected"
    )
    create_table_artifact(key=f"neurons-{cfg.method}", table=view.to_dicts(), description=f"select {key}")
    metrics = art.manifest.metrics
    test = specificity_markdown(metrics["specificity"], metrics["overlap"])
    create_markdown_artifact(
        key=f"mask-{cfg.method}",
        markdown=f"# Mask `{key}` ({cfg.method})\n\n{inputs_markdown(store, STAGE, key)}\n{test}\n"
        f"{show_pictures(store, STAGE, key)}\n",
        description=key,
    )
    return key
