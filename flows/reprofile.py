"""Re-profiling when checkpoints appear: by schedule (scan a location) or by event (one checkpoint).

scan-checkpoints: location -> checkpoints without a profile -> profile-checkpoint each
profile-checkpoint: checkpoint -> profile -> select -> drift against the previous mask
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from mnaft_core.config import DEFAULT_STORE
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.scan import find_checkpoints, local_copy
from mnaft_core.profiling.runner import ProfileConfig
from mnaft_core.selection.select import SelectConfig
from storage import ArtifactStore
from tasks.drift import drift_task
from tasks.profile import profile_key, profile_task
from tasks.select import select_task

CACHE = Path.home() / ".cache" / "mnaft" / "checkpoints"


def _previous_mask(store: str, method: str) -> str | None:
    """The newest mask of the same selector already in the store."""
    masks = [m for m in ArtifactStore(store).manifests("select") if (m.params or {}).get("method") == method]
    return masks[-1].key if masks else None


@flow(name="profile-checkpoint", log_prints=True)
def profile_checkpoint_flow(
    checkpoint: str,
    profile: ProfileConfig,
    select: SelectConfig,
    data_key: str | None = None,
    store: str = DEFAULT_STORE,
) -> dict[str, str]:
    """Profile one checkpoint (folder or URL), select its mask, and report drift from the previous mask.

    Args:
        checkpoint: the checkpoint's folder or URL (the mnaft.checkpoint.created event's mnaft.path)
        profile: the profile stage's settings
        select: the select stage's settings (its method names the previous mask compared against)
        data_key: dataset artifact key or unique prefix (empty: the newest dataset)
        store: artifact store URL (a folder, or s3://bucket/prefix)
    """
    from flows.stages import newest

    data_key = newest(store, "data", data_key)
    model = ModelConfig(name_or_path=str(local_copy(checkpoint, CACHE)))
    previous = _previous_mask(store, select.method)
    pkey = profile_task(model, profile, data_key, store)
    skey = select_task(select, pkey, store)
    keys = {"profile": pkey, "select": skey}
    if previous and previous != skey:
        keys["drift"] = drift_task(previous, skey, store)
    return keys


@flow(name="scan-checkpoints", log_prints=True)
def scan_checkpoints_flow(
    location: str,
    profile: ProfileConfig,
    select: SelectConfig,
    data_key: str | None = None,
    store: str = DEFAULT_STORE,
) -> list[str]:
    """Profile every checkpoint under ``location`` that has no profile yet; returns those profiled.

    Args:
        location: folder or object-store prefix holding checkpoints (save_pretrained folders)
        profile: the profile stage's settings
        select: the select stage's settings
        data_key: dataset artifact key or unique prefix (empty: the newest dataset)
        store: artifact store URL (a folder, or s3://bucket/prefix)
    """
    from flows.stages import newest

    data = newest(store, "data", data_key)
    st = ArtifactStore(store)
    fresh = []
    for ckpt in find_checkpoints(location):
        model = ModelConfig(name_or_path=str(local_copy(ckpt, CACHE)))
        if st.has("profile", profile_key(model, profile, data)):
            continue
        print(f"new checkpoint: {ckpt}")
        profile_checkpoint_flow(ckpt, profile, select, data, store)
        fresh.append(ckpt)
    return fresh
