"""The evaluate stage: every system on the test split -> outputs, scores, significance, report."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnaft_core._base import ProgressFn
from mnaft_core.data.dataset import load_samples
from mnaft_core.evaluation.gallery import write_gallery
from mnaft_core.evaluation.run import Candidate, evaluate
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.training.finetune import MODEL_DIR
from storage import ArtifactStore
from storage.http import http_base, public_url
from tasks._stage import (
    INLINE_MAX_BYTES,
    inputs_markdown,
    local_display,
    model_input,
    publish,
    stage_key,
    stage_progress,
    store_cache,
    with_pictures,
)

STAGE = "evaluate"
Checkpoints = Mapping[str, Mapping[int, str]]  # system -> seed -> finetune key


def _inputs(model: ModelConfig, data_key: str, checkpoints: Checkpoints) -> dict[str, str]:
    ck = {
        f"finetune:{s}:{seed}": k
        for s, seeds in sorted(checkpoints.items())
        for seed, k in sorted(seeds.items())
    }
    return {**model_input(model), "data": data_key, **ck}


def evaluate_key(
    model: ModelConfig, cfg: EvaluateConfig, data_key: str, checkpoints: Checkpoints, store: str = ""
) -> str:
    return stage_key(STAGE, cfg, _inputs(model, data_key, checkpoints), __name__)


def build_evaluate(
    model: ModelConfig,
    cfg: EvaluateConfig,
    data_key: str,
    checkpoints: Checkpoints,
    store: str,
    on_progress: ProgressFn | None = None,
) -> str:
    st = ArtifactStore(store)

    def build(out: Path) -> dict[str, Any]:
        samples = load_samples(
            st.open("data", data_key).local_dir(), cfg.split, limit=cfg.max_samples_per_direction
        )
        candidates = []
        for system, seeds in sorted(checkpoints.items()):
            for seed, key in sorted(seeds.items()):
                art = st.open("finetune", key)
                candidates.append(
                    Candidate(system, int(seed), art.local_path(MODEL_DIR), art.manifest.metrics)
                )
        metrics = evaluate(
            model, candidates, samples, cfg, out, on_progress=on_progress, progress=not local_display()
        )
        write_gallery(pl.read_parquet(out / "outputs.parquet"), {s.id: s.pil() for s in samples}, out)
        return metrics

    key = evaluate_key(model, cfg, data_key, checkpoints)
    return publish(store, STAGE, key, params=cfg.model_dump(mode="json"),
                   inputs=_inputs(model, data_key, checkpoints), module=__name__, build=build)  # fmt: skip


@task(
    name="evaluate",
    cache_key_fn=store_cache(STAGE, evaluate_key),
    persist_result=True,
    result_serializer="json",
)
def evaluate_task(
    model: ModelConfig, cfg: EvaluateConfig, data_key: str, checkpoints: Checkpoints, store: str
) -> str:
    """Score every system and write the report."""
    with stage_progress(STAGE, evaluate_key(model, cfg, data_key, checkpoints), "evaluation") as on_progress:
        key = build_evaluate(model, cfg, data_key, checkpoints, store, on_progress)
    art = ArtifactStore(store).open(STAGE, key)
    create_table_artifact(key="evaluation-scores", table=art.manifest.metrics["systems"], description=key)
    create_markdown_artifact(
        key="evaluation-report",
        markdown=with_pictures(art.read_bytes("report.md").decode(), store, STAGE, key)
        + "\n\n"
        + inputs_markdown(store, STAGE, key),
        description=key,
    )
    create_markdown_artifact(key="evaluation-gallery", markdown=gallery_markdown(store, key), description=key)
    return key


def gallery_markdown(store: str, key: str) -> str:
    """The gallery's tables, its contact sheets, and where its HTML page is (the UI cannot embed it)."""
    art = ArtifactStore(store).open(STAGE, key)
    base = http_base()
    page = public_url(STAGE, key, "gallery.html", base) if base else None
    lines = [art.read_bytes("gallery.md").decode().rstrip(), ""]
    lines.append(
        f"[the gallery with its images (HTML)]({page})" if page else f"HTML: `{art.url('gallery.html')}`"
    )
    for entry in art.manifest.files:
        if entry.path.startswith("gallery_") and entry.path.endswith(".png"):
            url = public_url(STAGE, key, entry.path, base) if base else None
            if url is None and entry.size <= INLINE_MAX_BYTES:
                url = "data:image/png;base64," + base64.b64encode(art.read_bytes(entry.path)).decode()
            lines.append(f"![{entry.path}]({url})" if url else f"`{art.url(entry.path)}`")
    return "\n\n".join(lines)
