"""One flow per stage: each runs alone on the pipeline config in force.

Given no upstream key, a stage opens the artifact the end-to-end flow makes for the same config (keys
from `tasks.plan`, the functions the pipeline uses); a missing one is an error naming the stage to run.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from mnaft_core.config import DEFAULT_STORE, PipelineConfig
from mnaft_core.data.config import DataConfig
from mnaft_core.evaluation.systems import EvaluateConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.organism.config import BootstrapConfig
from mnaft_core.profiling.runner import ProfileConfig
from tasks.bootstrap import bootstrap_task
from tasks.bootstrap import install as install_organism
from tasks.data import data_part_task, data_task
from tasks.evaluate import evaluate_part_task, evaluate_task
from tasks.finetune import finetune_task
from tasks.plan import (
    resolve_checkpoints,
    resolve_data,
    resolve_profile,
    resolve_system_mask,
    selector_config,
)
from tasks.profile import profile_part_task, profile_task
from tasks.select import select_task


@flow(name="data", log_prints=True)
def data_flow(config: DataConfig, store: str = DEFAULT_STORE, parts: int = 1) -> str:
    """Render or load the image-translation dataset; returns the dataset artifact key.

    ``parts > 1`` imports the images in that many `data-part` flow runs first (deployed: all at once,
    each on a worker; not deployed: one after another); the same dataset as one part.

    Args:
        config: the data stage: sources, cleaning, split and rendering
        store: artifact store URL (a folder, or s3://bucket/prefix)
        parts: import the images in this many parts (data-part flow runs)
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    if parts > 1:
        _run_part_flows("data-part/data-part", data_part_flow, {"config": config, "store": store}, parts)
    return data_task(config, store, parts)


@flow(name="data-part", log_prints=True)
def data_part_flow(config: DataConfig, store: str, part: int, parts: int) -> str:
    """Rows ``part`` of ``parts`` of a data import, written into its shared staging folder.

    Args:
        config: the data stage, as the data flow that started this part has it
        store: artifact store URL; a folder every part can write (local or shared mount)
        part: which part this run imports (0-based)
        parts: how many parts the import is split into
    """
    return data_part_task(config, store, part, parts)


def _run_part_flows(deployment: str, local: Any, args: dict[str, Any], parts: int) -> None:
    """Run ``parts`` part flows: subflows one after another locally, all at once when deployed
    (``timeout=0`` starts every part before waiting for any: a blocking call per part would serialise
    them)."""
    from prefect import runtime
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    if runtime.deployment.id is None:
        for part in range(parts):
            local(**args, part=part, parts=parts)
        return
    started = [
        run_deployment(
            deployment, parameters={**args, "part": part, "parts": parts}, timeout=0, as_subflow=True
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
        raise RuntimeError(f"{deployment} runs did not complete: {', '.join(failed)}; rerun to resume them")


@flow(name="profile", log_prints=True)
def profile_flow(config: PipelineConfig, data_key: str | None = None, parts: int = 1) -> str:
    """Per-neuron statistics of the config's model on its dataset (or on ``data_key``).

    ``parts > 1`` splits the shards over that many `profile-part` flow runs first (deployed: each on a
    worker of its pool, all at once; not deployed: one after another), then publishes the whole.

    Args:
        config: the whole pipeline (as in configs/*.yaml): its model, profile section and store; its
            data section names the dataset
        data_key: dataset artifact key or unique prefix (empty: the one the data section makes)
        parts: number of profile-part flow runs to split the shards over (1 = profile here)
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    store, data = config.store, resolve_data(config, data_key)
    if parts > 1:
        args = {"model": config.model, "config": config.profile, "data_key": data, "store": store}
        _run_part_flows("profile-part/profile-part", profile_part_flow, args, parts)
    return profile_task(config.model, config.profile, data, store)


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


@flow(name="select", log_prints=True)
def select_flow(config: PipelineConfig, method: str | None = None, profile_key: str | None = None) -> str:
    """Neuron tables and the mask of selector ``method`` (default: the select section's) from the
    config's profile (or ``profile_key``).

    Args:
        config: the whole pipeline: its select section and store; its model, data and profile
            sections name the profile
        method: selector (mnaft, random, magnitude, taylor, ...; empty: the select section's)
        profile_key: profile artifact key or unique prefix (empty: the one the config makes)
    """
    select = selector_config(config.select, method) if method else config.select
    return select_task(select, resolve_profile(config, profile_key), config.store)


@flow(name="finetune", log_prints=True)
def finetune_flow(
    config: PipelineConfig,
    system: str = "mnaft",
    seed: int = 0,
    data_key: str | None = None,
    mask_key: str | None = None,
) -> str:
    """Train one system of the suite (or a method / selector by name) with one seed, on the config's
    dataset and, for a mask-based system, on its selector's mask for the config's model.

    Args:
        config: the whole pipeline: its model, finetune section and store; its data, profile and
            select sections name the dataset and the mask
        system: a system of finetune.systems, or mnaft / full / lora / a mask selector (random, ...)
        seed: the training seed
        data_key: dataset artifact key or unique prefix (empty: the one the config makes)
        mask_key: select (mask) artifact key or prefix, checked to fit the system and the model
            (empty: the system's selector's mask for the config)
    """
    suite = config.finetune
    spec = suite.system(system)
    data = resolve_data(config, data_key)
    mask = resolve_system_mask(config, spec, mask_key, data)
    return finetune_task(config.model, suite.config_for(spec, seed), data, mask, config.store,
                         suite.max_train_per_direction)  # fmt: skip


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    config: PipelineConfig,
    checkpoints: dict[str, list[str]] | None = None,
    data_key: str | None = None,
    parts: int = 1,
) -> str:
    """Evaluate the base model, the cascades and fine-tuned checkpoints: ``checkpoints`` (system ->
    finetune keys, each labelled by the seed its run recorded) or every system and seed of the suite.

    ``parts > 1`` splits the units (the base, the OCR -> MT cascade, each checkpoint) over that many
    `evaluate-part` flow runs first (deployed: each on a worker of its pool, all at once; not deployed:
    one after another), then reports on the whole: the same artifact as one part.

    Args:
        config: the whole pipeline: its model, evaluate section and store; its other sections name
            the dataset and, without ``checkpoints``, every checkpoint of the suite
        checkpoints: system name -> finetune artifact keys or prefixes (empty: the suite's)
        data_key: dataset artifact key or unique prefix (empty: the one the config makes)
        parts: number of evaluate-part flow runs to split the units over (1 = evaluate here)
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    found = resolve_checkpoints(config, checkpoints)
    data = resolve_data(config, data_key)
    if parts > 1:
        args = {"model": config.model, "config": config.evaluate, "data_key": data,
                "checkpoints": found, "store": config.store}  # fmt: skip
        _run_part_flows("evaluate-part/evaluate-part", evaluate_part_flow, args, parts)
    return evaluate_task(config.model, config.evaluate, data, found, config.store, parts)


@flow(name="evaluate-part", log_prints=True)
def evaluate_part_flow(
    model: ModelConfig,
    config: EvaluateConfig,
    data_key: str,
    checkpoints: dict[str, dict[int, str]],
    store: str,
    part: int,
    parts: int,
) -> list[str]:
    """Units ``part, part + parts, ...`` of an evaluation, written into its shared staging folder.

    Args:
        model: the base model
        config: the evaluate stage's settings (the same for every part)
        data_key: dataset artifact key
        checkpoints: system name -> seed -> finetune artifact key
        store: artifact store URL; a folder every part can write (local or shared mount)
        part: this part's index, 0 to parts - 1
        parts: how many parts the units are split over
    """
    return evaluate_part_task(model, config, data_key, checkpoints, store, part, parts)


@flow(name="bootstrap", log_prints=True)
def bootstrap_flow(config: BootstrapConfig, store: str = DEFAULT_STORE, install: bool = True) -> str:
    """Build the embedded organisms from their data (cached in the store); install them under assets/.

    Args:
        config: the organism recipe: data, model sizes, training stages
        store: artifact store URL (a folder, or s3://bucket/prefix)
        install: copy the result over assets/<name> and assets/nllb-<name> (config.name)
    """
    key = bootstrap_task(config, data_task(config.data, store), store)
    if install:
        for path in install_organism(store, key, config.name):
            print(f"installed {path}")
    return key
