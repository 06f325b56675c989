"""Re-profiling when checkpoints appear: by schedule (scan a location) or by event (one checkpoint).

scan-checkpoints: location -> checkpoints without a profile -> profile-checkpoint each
profile-checkpoint: checkpoint -> profile -> select -> drift against the base model's mask
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from mnaft_core.config import PipelineConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.scan import find_checkpoints, local_copy
from storage import ArtifactStore
from tasks.drift import drift_task
from tasks.plan import Plan, resolve_data
from tasks.profile import profile_key, profile_task
from tasks.select import select_task

CACHE = Path.home() / ".cache" / "mnaft" / "checkpoints"


@flow(name="profile-checkpoint", log_prints=True)
def profile_checkpoint_flow(
    checkpoint: str, config: PipelineConfig, data_key: str | None = None
) -> dict[str, str]:
    """Profile one checkpoint (folder or URL) on the config's dataset, select its mask, and report its
    drift from the mask the config selects for its base model (when that mask is in the store).

    Args:
        checkpoint: the checkpoint's folder or URL (the mnaft.checkpoint.created event's mnaft.path)
        config: the whole pipeline: profile and select sections, store; its model is the base model
        data_key: dataset artifact key or unique prefix (empty: the one the data section makes)
    """
    store = config.store
    data = resolve_data(config, data_key)
    model = ModelConfig(name_or_path=str(local_copy(checkpoint, CACHE)))
    base_mask = Plan(config).mask(config.select.method, Plan(config).profile(data))
    pkey = profile_task(model, config.profile, data, store)
    skey = select_task(config.select, pkey, store)
    keys = {"profile": pkey, "select": skey}
    if ArtifactStore(store).has("select", base_mask) and base_mask != skey:
        keys["drift"] = drift_task(base_mask, skey, store)
    return keys


@flow(name="scan-checkpoints", log_prints=True)
def scan_checkpoints_flow(location: str, config: PipelineConfig, data_key: str | None = None) -> list[str]:
    """Profile every checkpoint under ``location`` that has no profile yet; returns those profiled.

    Args:
        location: folder or object-store prefix holding checkpoints (save_pretrained folders)
        config: the whole pipeline: profile and select sections, store; its model is the base model
        data_key: dataset artifact key or unique prefix (empty: the one the data section makes)
    """
    data = resolve_data(config, data_key)
    st = ArtifactStore(config.store)
    fresh = []
    for ckpt in find_checkpoints(location):
        model = ModelConfig(name_or_path=str(local_copy(ckpt, CACHE)))
        if st.has("profile", profile_key(model, config.profile, data)):
            continue
        print(f"new checkpoint: {ckpt}")
        profile_checkpoint_flow(ckpt, config, data)
        fresh.append(ckpt)
    return fresh
