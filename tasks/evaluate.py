"""The evaluate stage: every system on the test split -> outputs, scores, significance, report."""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mnaft_core._base import ProgressFn
from mnaft_core.data.dataset import Sample, load_samples
from mnaft_core.evaluation.gallery import write_gallery
from mnaft_core.evaluation.run import Candidate, Unit, evaluate, read_unit, run_unit, units, write_unit
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.training.finetune import MODEL_DIR
from storage import ArtifactStore
from storage.http import http_base, public_url
from tasks._stage import (
    InlineBudget,
    inputs_markdown,
    local_display,
    model_input,
    parts_store,
    picture_markdown,
    publish,
    stage_key,
    stage_progress,
    store_cache,
    with_pictures,
)

STAGE = "evaluate"
UNITS_DIR = "units"  # evaluation parts' results, in the staging folder only
Checkpoints = Mapping[str, Mapping[int, str]]  # system -> seed -> finetune key


def _inputs(model: ModelConfig, data_key: str, checkpoints: Checkpoints) -> dict[str, str]:
    ck = {
        f"finetune:{s}:{seed}": k
        for s, seeds in sorted(checkpoints.items())
        for seed, k in sorted(seeds.items())
    }
    return {**model_input(model), "data": data_key, **ck}


def evaluate_key(
    model: ModelConfig,
    cfg: EvaluateConfig,
    data_key: str,
    checkpoints: Checkpoints,
    store: str = "",
    parts: int = 1,
) -> str:
    """The models, the dataset, the checkpoints and the settings (parts change nothing)."""
    return stage_key(STAGE, cfg, _inputs(model, data_key, checkpoints), __name__)


def _setup(
    st: ArtifactStore, cfg: EvaluateConfig, data_key: str, checkpoints: Checkpoints
) -> tuple[list[Sample], list[Candidate]]:
    """The test samples and the checkpoints under evaluation: identical for the whole run and its parts."""
    samples = load_samples(
        st.open("data", data_key).local_dir(), cfg.split, limit=cfg.max_samples_per_direction
    )
    candidates = []
    for system, seeds in sorted(checkpoints.items()):
        for seed, key in sorted(seeds.items(), key=lambda kv: int(kv[0])):
            art = st.open("finetune", key)
            candidates.append(Candidate(system, int(seed), art.local_path(MODEL_DIR), art.manifest.metrics))
    return samples, candidates


def _unit_file(folder: Path, unit: Unit) -> Path:
    return folder / UNITS_DIR / (re.sub(r"[^A-Za-z0-9_.+-]", "_", unit.name) + ".parquet")


def build_evaluate(
    model: ModelConfig,
    cfg: EvaluateConfig,
    data_key: str,
    checkpoints: Checkpoints,
    store: str,
    on_progress: ProgressFn | None = None,
    parts: int = 1,
) -> str:
    """Evaluate and publish. ``parts > 1``: units that `evaluate_part` already wrote into the staging
    folder are read back, the missing ones run here (each saved as it ends, so a rerun resumes), and
    the report is made from them all: the same files as a one-part run."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    st = ArtifactStore(store)

    def build(out: Path) -> dict[str, Any]:
        samples, candidates = _setup(st, cfg, data_key, checkpoints)
        done = None
        if parts > 1:
            (out / UNITS_DIR).mkdir(parents=True, exist_ok=True)
            done = {}
            for u in units(candidates, cfg):
                if not (f := _unit_file(out, u)).exists():
                    write_unit(run_unit(u, model, samples, cfg, progress=not local_display()), f)
                done[u.name] = read_unit(f)
        metrics = evaluate(model, candidates, samples, cfg, out, on_progress=on_progress,
                           progress=not local_display(), done=done)  # fmt: skip
        write_gallery(pl.read_parquet(out / "outputs.parquet"), {s.id: s.pil() for s in samples}, out)
        shutil.rmtree(out / UNITS_DIR, ignore_errors=True)  # joined into outputs.parquet: not published
        return metrics

    key = evaluate_key(model, cfg, data_key, checkpoints)
    return publish(store, STAGE, key, params=cfg.model_dump(mode="json"),
                   inputs=_inputs(model, data_key, checkpoints), module=__name__, build=build,
                   resumable=parts > 1)  # fmt: skip


def evaluate_part(
    model: ModelConfig,
    cfg: EvaluateConfig,
    data_key: str,
    checkpoints: Checkpoints,
    store: str,
    part: int,
    parts: int,
) -> list[str]:
    """Run units ``part, part + parts, ...`` (base, OCR -> MT cascade, each checkpoint) into the run's
    shared staging folder; the units written.

    A unit is one model loaded once, so parts split the GPU work without loading any model twice, and
    each corpus-level figure stays whole in one unit. The staging folder must be visible to every part:
    a local store folder (shared between machines if they mount it).
    """
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not in 0..{parts - 1}")
    st = parts_store(store, STAGE, "evaluating")
    key = evaluate_key(model, cfg, data_key, checkpoints)
    if st.has(STAGE, key):
        return []
    samples, candidates = _setup(st, cfg, data_key, checkpoints)
    folder = st.resumable_dir(STAGE, key)
    (folder / UNITS_DIR).mkdir(parents=True, exist_ok=True)
    written = []
    for u in units(candidates, cfg)[part::parts]:
        if not (f := _unit_file(folder, u)).exists():
            write_unit(run_unit(u, model, samples, cfg, progress=False), f)
            written.append(u.name)
    return written


@task(
    name="evaluate",
    cache_key_fn=store_cache(STAGE, evaluate_key),
    persist_result=True,
    result_serializer="json",
)
def evaluate_task(
    model: ModelConfig,
    cfg: EvaluateConfig,
    data_key: str,
    checkpoints: Checkpoints,
    store: str,
    parts: int = 1,
) -> str:
    """Score every system and write the report."""
    with stage_progress(STAGE, evaluate_key(model, cfg, data_key, checkpoints), "evaluation") as on_progress:
        key = build_evaluate(model, cfg, data_key, checkpoints, store, on_progress, parts)
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


@task(name="evaluate-part")
def evaluate_part_task(
    model: ModelConfig,
    cfg: EvaluateConfig,
    data_key: str,
    checkpoints: Checkpoints,
    store: str,
    part: int,
    parts: int,
) -> list[str]:
    """One part of an evaluation split across workers (see ``evaluate_part``)."""
    return evaluate_part(model, cfg, data_key, checkpoints, store, part, parts)


def gallery_markdown(store: str, key: str) -> str:
    """The gallery's tables, its contact sheets, and where its HTML page is (the UI cannot embed it)."""
    art = ArtifactStore(store).open(STAGE, key)
    base = http_base()
    page = public_url(STAGE, key, "gallery.html", base) if base else None
    lines = [art.read_bytes("gallery.md").decode().rstrip(), ""]
    lines.append(
        f"[the gallery with its images (HTML)]({page})" if page else f"HTML: `{art.url('gallery.html')}`"
    )
    budget = InlineBudget()
    for entry in art.manifest.files:
        if entry.path.startswith("gallery_") and entry.path.endswith(".png"):
            url = public_url(STAGE, key, entry.path, base) if base else None
            lines.append(picture_markdown(art, entry.path, entry.size, url, budget))
    return "\n\n".join(lines)
