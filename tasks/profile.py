"""The profile stage: the model on translation instructions (image, text) -> per-neuron statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from mnaft_core._base import ProgressFn
from mnaft_core.data.dataset import load_samples
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.profiling.runner import ProfileConfig, plan, run_profile
from mnaft_core.profiling.zarr_stats import pending_shards
from mnaft_core.selection.from_profile import SITE_PARAMETERS
from mnaft_core.selection.mask import model_fingerprint, site_parameters
from storage import ArtifactStore
from tasks._stage import (
    inputs_markdown,
    local_display,
    model_input,
    parts_store,
    publish,
    stage_key,
    stage_progress,
    store_cache,
)

STAGE = "profile"
STATS_DIR = "stats.zarr"


def profile_key(model: ModelConfig, cfg: ProfileConfig, data_key: str, store: str = "") -> str:
    return stage_key(STAGE, cfg, {**model_input(model), "data": data_key}, __name__)


def _setup(model: ModelConfig, cfg: ProfileConfig, data_key: str, store: str):  # type: ignore[no-untyped-def]
    """The loaded model, the plan and the store attributes: identical for the whole run and its parts."""
    loaded = load_mllm(model)
    dataset = ArtifactStore(store).open("data", data_key).local_dir()
    the_plan = plan(load_samples(dataset, cfg.split, limit=cfg.max_samples_per_direction), cfg)
    attrs = {"fingerprint": model_fingerprint(loaded.model), "data_key": data_key, "model": loaded.source,
             SITE_PARAMETERS: site_parameters(loaded.model)}  # fmt: skip
    return loaded, the_plan, attrs


def build_profile(
    model: ModelConfig,
    cfg: ProfileConfig,
    data_key: str,
    store: str,
    progress: bool = True,
    on_progress: ProgressFn | None = None,
) -> str:
    """Profile and publish; a killed run resumes from its last finished shard on the next call, and
    shards that parts (``profile_part``) already wrote are not profiled again."""

    def build(out: Path) -> dict[str, Any]:
        loaded, the_plan, attrs = _setup(model, cfg, data_key, store)
        root = run_profile(loaded.model, loaded.processor, the_plan, cfg, out / STATS_DIR, attrs,
                           progress=progress, on_progress=on_progress)  # fmt: skip
        if pending := pending_shards(root):
            raise RuntimeError(f"profile left {len(pending)} shards unfinished")
        return {
            "fingerprint": attrs["fingerprint"],
            "conditions": [c.name for c in the_plan.conditions],
            "samples": sum(len(v) for v in the_plan.samples.values()),
            "shards": len(the_plan.shards),
        }

    key = profile_key(model, cfg, data_key)
    inputs = {**model_input(model), "data": data_key}
    return publish(store, STAGE, key, params=cfg.model_dump(mode="json"), inputs=inputs, module=__name__,
                   build=build, resumable=True)  # fmt: skip


def profile_part(
    model: ModelConfig, cfg: ProfileConfig, data_key: str, store: str, part: int, parts: int
) -> list[int]:
    """Profile shards ``part, part + parts, ...`` into the run's shared staging store; the shards written.

    Parts write disjoint whole chunks of one Zarr store, so any number run at once (one flow run each,
    on as many workers); the profile stage afterwards finds them done and publishes. The staging store
    must be visible to every part: a local store folder (shared between machines if they mount it).
    """
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not in 0..{parts - 1}")
    st = parts_store(store, STAGE, "profiling")
    key = profile_key(model, cfg, data_key)
    if st.has(STAGE, key):
        return []
    loaded, the_plan, attrs = _setup(model, cfg, data_key, store)
    mine = list(range(part, len(the_plan.shards), parts))
    out = st.resumable_dir(STAGE, key) / STATS_DIR
    out.parent.mkdir(parents=True, exist_ok=True)
    run_profile(loaded.model, loaded.processor, the_plan, cfg, out, attrs, only_shards=mine, progress=False)
    return mine


@task(
    name="profile",
    cache_key_fn=store_cache(STAGE, profile_key),
    persist_result=True,
    result_serializer="json",
)
def profile_task(model: ModelConfig, cfg: ProfileConfig, data_key: str, store: str) -> str:
    """Record per-neuron activation statistics of both modules."""
    with stage_progress(STAGE, profile_key(model, cfg, data_key), "profiling") as on_progress:
        key = build_profile(
            model, cfg, data_key, store, progress=not local_display(), on_progress=on_progress
        )
    m = ArtifactStore(store).open(STAGE, key).manifest
    create_markdown_artifact(
        key="profile-summary",
        markdown=f"# Profile `{key}`\n\nmodel fingerprint `{m.metrics['fingerprint'][:16]}`, "
        f"{m.metrics['samples']} samples, conditions: {', '.join(m.metrics['conditions'])}\n\n"
        + inputs_markdown(store, STAGE, key),
        description=key,
    )
    return key


@task(name="profile-part")
def profile_part_task(
    model: ModelConfig, cfg: ProfileConfig, data_key: str, store: str, part: int, parts: int
) -> list[int]:
    """One part of a profile run split across workers (see ``profile_part``)."""
    return profile_part(model, cfg, data_key, store, part, parts)
