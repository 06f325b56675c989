"""What every stage task shares: its content key, a Prefect cache keyed by it, and publishing.

The store is the source of truth. Prefect's cache key for a stage is the artifact's content key, but
only while that artifact exists complete in the store; after `mnaft artifacts gc` removed it, the task
runs again instead of returning a reference to nothing. Prefect persists only the key (a string).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefect.context import TaskRunContext

from mnaft_core._base import StrictModel
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import model_identity
from storage import ArtifactStore, code_version, content_key


def stage_key(
    stage: str, params: StrictModel | Mapping[str, Any], inputs: Mapping[str, str], packages: tuple[str, ...]
) -> str:
    """Content key of ``stage``: upstream keys + parameters + the source of the code that computes it."""
    p = params.model_dump(mode="json") if isinstance(params, StrictModel) else dict(params)
    return content_key(stage, inputs, p, code_version(*packages))


def model_input(model: ModelConfig) -> dict[str, str]:
    """A model as a stage input: its content identity (loading options that change nothing are left out)."""
    return {"model": model_identity(model)}


def store_cache(
    stage: str, key_of: Callable[..., str]
) -> Callable[[TaskRunContext, dict[str, Any]], str | None]:
    """A Prefect ``cache_key_fn`` that hits exactly when the store holds the stage's artifact."""

    def cache_key(_: TaskRunContext, parameters: dict[str, Any]) -> str | None:
        key = key_of(**parameters)
        return f"{stage}-{key}" if ArtifactStore(parameters["store"]).has(stage, key) else None

    return cache_key


def publish(
    store: str,
    stage: str,
    key: str,
    *,
    params: Any,
    inputs: Mapping[str, str],
    packages: tuple[str, ...],
    build: Callable[[Path], Mapping[str, Any]],
    resumable: bool = False,
) -> str:
    """Run ``build(folder)`` and publish the folder as ``stage/key`` unless it already exists."""
    st = ArtifactStore(store)
    if st.has(stage, key):
        return key
    with st.writer(
        stage, key, inputs=inputs, params=params, code_version=code_version(*packages), resumable=resumable
    ) as w:
        w.metrics.update(build(w.dir))
    return key
