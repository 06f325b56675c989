"""The data stage: parallel text -> rendered images -> dataset artifact (Parquet + card)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnaft_core.data.build import build_dataset, write_dataset
from mnaft_core.data.card import write_card
from mnaft_core.data.config import DataConfig
from storage import ArtifactStore
from tasks._stage import publish, stage_key, store_cache, with_pictures

STAGE = "data"


def data_key(cfg: DataConfig, store: str = "") -> str:
    return stage_key(STAGE, cfg, {}, __name__)


def build_data(cfg: DataConfig, store: str) -> str:
    """Build and publish the dataset artifact unless it exists; returns its key."""

    def build(out: Path) -> dict[str, Any]:
        result = build_dataset(cfg)
        write_dataset(result, out)
        write_card(result, out)
        card = json.loads((out / "card.json").read_text())
        return {"counts": card.get("counts", {}), "dropped": card.get("dropped", {})}

    key = data_key(cfg)
    return publish(
        store, STAGE, key, params=cfg.model_dump(mode="json"), inputs={}, module=__name__, build=build
    )


@task(name="data", cache_key_fn=store_cache(STAGE, data_key), persist_result=True, result_serializer="json")
def data_task(cfg: DataConfig, store: str) -> str:
    """Render or load the image-translation dataset."""
    key = build_data(cfg, store)
    art = ArtifactStore(store).open(STAGE, key)
    card = json.loads(art.read_bytes("card.json"))
    rows = [{"direction": d, **dict(splits)} for d, splits in sorted(card.get("counts", {}).items())]
    create_table_artifact(key="dataset-summary", table=rows, description=f"dataset {key}: pairs per split")
    card_md = with_pictures(art.read_bytes("card.md").decode(), store, STAGE, key)
    create_markdown_artifact(key="dataset-card", markdown=card_md, description=key)
    return key
