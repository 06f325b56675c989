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
from mnaft_core.selection.mask import model_fingerprint
from storage import ArtifactStore
from tasks._stage import MODEL_CODE, model_input, publish, stage_key, stage_progress, store_cache

STAGE = "profile"
PACKAGES = ("mnaft_core.profiling", "mnaft_core.data.dataset", "mnaft_core._base", *MODEL_CODE)
STATS_DIR = "stats.zarr"


def profile_key(model: ModelConfig, cfg: ProfileConfig, data_key: str, store: str = "") -> str:
    return stage_key(STAGE, cfg, {**model_input(model), "data": data_key}, PACKAGES)


def build_profile(
    model: ModelConfig,
    cfg: ProfileConfig,
    data_key: str,
    store: str,
    progress: bool = True,
    on_progress: ProgressFn | None = None,
) -> str:
    """Profile and publish; a killed run resumes from its last finished shard on the next call."""
    st = ArtifactStore(store)
    dataset = st.open("data", data_key).local_dir()

    def build(out: Path) -> dict[str, Any]:
        loaded = load_mllm(model)
        samples = load_samples(dataset, cfg.split, limit=cfg.max_samples_per_direction)
        the_plan = plan(samples, cfg)
        attrs = {"fingerprint": model_fingerprint(loaded.model), "data_key": data_key, "model": loaded.source}
        root = run_profile(
            loaded.model,
            loaded.processor,
            the_plan,
            cfg,
            out / STATS_DIR,
            attrs,
            progress=progress,
            on_progress=on_progress,
        )
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
    return publish(store, STAGE, key, params=cfg.model_dump(mode="json"), inputs=inputs, packages=PACKAGES,
                   build=build, resumable=True)  # fmt: skip


@task(
    name="profile",
    cache_key_fn=store_cache(STAGE, profile_key),
    persist_result=True,
    result_serializer="json",
)
def profile_task(model: ModelConfig, cfg: ProfileConfig, data_key: str, store: str) -> str:
    """Record per-neuron activation statistics of both modules."""
    with stage_progress(STAGE, profile_key(model, cfg, data_key), "profiling") as on_progress:
        key = build_profile(model, cfg, data_key, store, on_progress=on_progress)
    m = ArtifactStore(store).open(STAGE, key).manifest
    create_markdown_artifact(
        key="profile-summary",
        markdown=f"# Profile `{key}`\n\nmodel fingerprint `{m.metrics['fingerprint'][:16]}`, "
        f"{m.metrics['samples']} samples, conditions: {', '.join(m.metrics['conditions'])}\n",
        description=key,
    )
    return key
