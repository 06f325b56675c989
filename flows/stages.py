"""One flow per stage: each runs alone given upstream artifact keys, or finds the newest matching ones."""

from __future__ import annotations

import time

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
from tasks.profile import profile_part_task, profile_task
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
    """Render or load the image-translation dataset; returns the dataset artifact key.

    Args:
        config: the data stage: sources, cleaning, split and rendering
        store: artifact store URL (a folder, or s3://bucket/prefix)
    """
    return data_task(config, store)


@flow(name="profile", log_prints=True)
def profile_flow(
    model: ModelConfig,
    config: ProfileConfig,
    data_key: str | None = None,
    store: str = DEFAULT_STORE,
    parts: int = 1,
) -> str:
    """Per-neuron statistics of ``model`` on the dataset (newest one unless ``data_key`` is given).

    ``parts > 1`` splits the shards over that many `profile-part` flow runs first (deployed: each on a
    worker of its pool, all at once; not deployed: one after another), then publishes the whole.

    Args:
        model: the model to profile (hub id, folder, or embedded:organism) and how to load it
        config: the profile stage: samples, batches, statistics
        data_key: dataset artifact key or unique prefix (empty: the newest dataset)
        store: artifact store URL (a folder, or s3://bucket/prefix)
        parts: number of profile-part flow runs to split the shards over (1 = profile here)
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    data_key = newest(store, "data", data_key)
    if parts > 1:
        _run_parts(model, config, data_key, store, parts)
    return profile_task(model, config, data_key, store)


@flow(name="profile-part", log_prints=True)
def profile_part_flow(
    model: ModelConfig, config: ProfileConfig, data_key: str, store: str, part: int, parts: int
) -> list[int]:
    """Shards ``part, part + parts, ...`` of a profile run, written into its shared staging store.

    Args:
        model: the model being profiled
        config: the profile stage's settings (the same for every part)
        data_key: dataset artifact key
        store: artifact store URL (a folder, or s3://bucket/prefix)
        part: this part's index, 0 to parts - 1
        parts: how many parts the shards are split over
    """
    return profile_part_task(model, config, data_key, store, part, parts)


def _run_parts(model: ModelConfig, config: ProfileConfig, data_key: str, store: str, parts: int) -> None:
    from prefect import runtime
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    args = {"model": model, "config": config, "data_key": data_key, "store": store, "parts": parts}
    if runtime.deployment.id is None:  # a local run: the parts are subflows, one after another
        for part in range(parts):
            profile_part_flow(model, config, data_key, store, part, parts)
        return
    # timeout=0: start every part before waiting for any (a blocking call per part would serialise them)
    started = [
        run_deployment(
            "profile-part/profile-part", parameters={**args, "part": part}, timeout=0, as_subflow=True
        )
        for part in range(parts)
    ]
    with get_client(sync_client=True) as client:
        runs = [r.id for r in started]  # type: ignore[union-attr]
        while True:
            states = [client.read_flow_run(i).state for i in runs]
            if all(st is not None and st.is_final() for st in states):
                break
            time.sleep(10)
    failed = [str(i) for i, st in zip(runs, states, strict=True) if not (st and st.is_completed())]
    if failed:
        raise RuntimeError(f"profile parts did not complete: {', '.join(failed)}; rerun to resume them")


@flow(name="select", log_prints=True)
def select_flow(config: SelectConfig, profile_key: str | None = None, store: str = DEFAULT_STORE) -> str:
    """Neuron tables and the mask from a profile (newest unless ``profile_key`` is given).

    Args:
        config: the select stage: selector, thresholds, layers, modules
        profile_key: profile artifact key or unique prefix (empty: the newest profile)
        store: artifact store URL (a folder, or s3://bucket/prefix)
    """
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
    """Train one method; mnaft uses ``mask_key`` or the newest mask.

    Args:
        model: the base model to fine-tune and how to load it
        config: the training run: method, steps, batch, learning rate, seed
        data_key: dataset artifact key or unique prefix (empty: the newest dataset)
        mask_key: select (mask) artifact key for method mnaft (empty: the newest mask)
        store: artifact store URL (a folder, or s3://bucket/prefix)
        max_train: training samples per direction (0 = all of the train split)
    """
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
    """Evaluate the base model, the cascades and the given fine-tuned checkpoints (system -> seed -> key).

    Args:
        model: the base model (also the architecture of every checkpoint)
        config: the evaluate stage: split, samples, decoding, cascade, significance
        checkpoints: fine-tuned checkpoints to score, as system name -> seed -> finetune artifact key
        data_key: dataset artifact key or unique prefix (empty: the newest dataset)
        store: artifact store URL (a folder, or s3://bucket/prefix)
    """
    return evaluate_task(model, config, newest(store, "data", data_key), checkpoints, store)


@flow(name="bootstrap", log_prints=True)
def bootstrap_flow(config: BootstrapConfig, store: str = DEFAULT_STORE, install: bool = True) -> str:
    """Build the embedded organisms from their data (cached in the store); install them under assets/.

    Args:
        config: the organism recipe: data, model sizes, training stages
        store: artifact store URL (a folder, or s3://bucket/prefix)
        install: copy the result over assets/organism and assets/nllb-organism
    """
    key = bootstrap_task(config, data_task(config.data, store), store)
    if install:
        for path in install_organism(store, key):
            print(f"installed {path}")
    return key
