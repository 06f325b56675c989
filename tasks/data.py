"""The data stage: parallel text -> rendered images -> dataset artifact (Parquet + card)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnaft_core.data.build import DatasetBuild, build_dataset, build_part, finish_parts, part_done
from mnaft_core.data.card import write_card
from mnaft_core.data.config import DataConfig
from mnaft_core.data.fingerprint import data_fingerprints
from storage import ArtifactStore
from tasks._stage import parts_store, publish, stage_key, store_cache, with_pictures

STAGE = "data"


def data_key(cfg: DataConfig, store: str = "", parts: int = 1) -> str:
    """The config, the code and the content fingerprints of the files it reads (parts change nothing)."""
    params = {**cfg.model_dump(mode="json"), "source_fingerprints": data_fingerprints(cfg)}
    return stage_key(STAGE, params, {}, __name__)


def build_data(cfg: DataConfig, store: str, parts: int = 1) -> str:
    """Build and publish the dataset artifact unless it exists; returns its key.

    ``parts > 1``: parts that `data_part` already wrote into the staging folder are kept, the missing
    ones are built here, then all are joined (the same file as a one-part build).
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")

    def build(out: Path) -> dict[str, Any]:
        result: DatasetBuild
        if parts == 1:
            result = build_dataset(cfg, out_dir=out)
        else:
            for i in range(parts):
                if not part_done(out, i, parts):
                    build_part(cfg, i, parts, out)
            result = finish_parts(cfg, out, parts)
        write_card(result, out)
        card = json.loads((out / "card.json").read_text())
        return {
            "counts": card.get("counts", {}),
            "dropped": card.get("dropped", {}),
            "skipped_bad": card.get("skipped_bad", {}),
            "source_fingerprints": data_fingerprints(cfg),
        }

    key = data_key(cfg)
    return publish(
        store,
        STAGE,
        key,
        params=cfg.model_dump(mode="json"),
        inputs={},
        module=__name__,
        build=build,
        resumable=parts > 1,
    )


def data_part(cfg: DataConfig, store: str, part: int, parts: int) -> str:
    """Write part ``part`` of ``parts`` of the dataset into the run's staging folder; returns the key.

    Every part reads the sources' records (text only) to agree on the rows, and reads, checks and
    writes the images of its own contiguous slice of them: the expensive work splits ``parts`` ways.
    """
    st = parts_store(store, STAGE, "importing data")
    key = data_key(cfg)
    folder = st.resumable_dir(STAGE, key)
    if not st.has(STAGE, key) and not part_done(folder, part, parts):
        build_part(cfg, part, parts, folder, progress=False)
    return key


@task(name="data", cache_key_fn=store_cache(STAGE, data_key), persist_result=True, result_serializer="json")
def data_task(cfg: DataConfig, store: str, parts: int = 1) -> str:
    """Render or load the image-translation dataset."""
    key = build_data(cfg, store, parts)
    art = ArtifactStore(store).open(STAGE, key)
    card = json.loads(art.read_bytes("card.json"))
    rows = [{"direction": d, **dict(splits)} for d, splits in sorted(card.get("counts", {}).items())]
    create_table_artifact(key="dataset-summary", table=rows, description=f"dataset {key}: pairs per split")
    card_md = with_pictures(art.read_bytes("card.md").decode(), store, STAGE, key)
    create_markdown_artifact(key="dataset-card", markdown=card_md, description=key)
    return key


@task(name="data-part")
def data_part_task(cfg: DataConfig, store: str, part: int, parts: int) -> str:
    """One part of a data import split across workers (see ``data_part``)."""
    return data_part(cfg, store, part, parts)
