"""One flow per stage: each runs alone given upstream artifact keys, or finds the newest matching ones."""

from __future__ import annotations

from prefect import flow

from mnaft_core.config import DEFAULT_STORE
from mnaft_core.data.config import DataConfig
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.organism.config import BootstrapConfig
from mnaft_core.profiling.runner import ProfileConfig
from mnaft_core.selection.select import SelectConfig
from mnaft_core.training.config import FinetuneConfig
from storage import ArtifactStore, StoreError
from tasks.bootstrap import bootstrap_task
from tasks.bootstrap import install as install_organism
from tasks.data import data_task
from tasks.evaluate import evaluate_task
from tasks.finetune import finetune_task
from tasks.profile import profile_task
from tasks.select import select_task


def newest(store: str, stage: str, given: str | None) -> str:
    """``given`` (a key or unique prefix) resolved in the store, or the newest artifact of ``stage``."""
    st = ArtifactStore(store)
    if given:
        return st.resolve(given, stage).key
    manifests = st.manifests(stage)
    if not manifests:
        raise StoreError(f"{store}: no {stage} artifact yet; run the {stage} flow first or pass its key")
    return manifests[-1].key


@flow(name="data", log_prints=True)
def data_flow(config: DataConfig, store: str = DEFAULT_STORE) -> str:
    """Render or load the image-translation dataset; returns the dataset artifact key."""
    return data_task(config, store)


@flow(name="profile", log_prints=True)
def profile_flow(
    model: ModelConfig, config: ProfileConfig, data_key: str | None = None, store: str = DEFAULT_STORE
) -> str:
    """Per-neuron statistics of ``model`` on the dataset (newest one unless ``data_key`` is given)."""
    return profile_task(model, config, newest(store, "data", data_key), store)


@flow(name="select", log_prints=True)
def select_flow(config: SelectConfig, profile_key: str | None = None, store: str = DEFAULT_STORE) -> str:
    """Neuron tables and the mask from a profile (newest unless ``profile_key`` is given)."""
    return select_task(config, newest(store, "profile", profile_key), store)


@flow(name="finetune", log_prints=True)
def finetune_flow(
    model: ModelConfig,
    config: FinetuneConfig,
    data_key: str | None = None,
    mask_key: str | None = None,
    store: str = DEFAULT_STORE,
    max_train: int = 0,
) -> str:
    """Train one method; mnaft uses ``mask_key`` or the newest mask."""
    mask = newest(store, "select", mask_key) if config.method == "mnaft" else None
    return finetune_task(model, config, newest(store, "data", data_key), mask, store, max_train)


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    model: ModelConfig,
    config: EvaluateConfig,
    checkpoints: dict[str, dict[int, str]],
    data_key: str | None = None,
    store: str = DEFAULT_STORE,
) -> str:
    """Evaluate the base model, the cascades and the given fine-tuned checkpoints (system -> seed -> key)."""
    return evaluate_task(model, config, newest(store, "data", data_key), checkpoints, store)


@flow(name="bootstrap", log_prints=True)
def bootstrap_flow(config: BootstrapConfig, store: str = DEFAULT_STORE, install: bool = True) -> str:
    """Build the embedded organisms from their data (cached in the store); install them under assets/."""
    key = bootstrap_task(config, data_task(config.data, store), store)
    if install:
        for path in install_organism(store, key):
            print(f"installed {path}")
    return key
