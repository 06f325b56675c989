"""The finetune stage: base model + training split (+ mask) -> merged checkpoint (+ neuron delta)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from mnaft_core._base import ProgressFn
from mnaft_core.data.dataset import load_samples
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.selection.from_profile import MASK_FILE
from mnaft_core.selection.mask import NeuronMask
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.finetune import MODEL_DIR, finetune
from mnaft_core.training.launch import METRICS, LaunchSpec, Rendezvous, lead, run_torchrun
from storage import ArtifactStore
from tasks._stage import (
    artifact_key,
    inputs_markdown,
    local_display,
    model_input,
    publish,
    stage_key,
    stage_progress,
    store_cache,
)

STAGE = "finetune"
CHECKPOINT_EVENT = "mnaft.checkpoint.created"


def finetune_key(
    model: ModelConfig,
    cfg: FinetuneConfig,
    data_key: str,
    mask_key: str | None,
    store: str = "",
    max_train: int = 0,
) -> str:
    inputs = {**model_input(model), "data": data_key, **({"mask": mask_key} if mask_key else {})}
    return stage_key(STAGE, {**cfg.model_dump(mode="json"), "max_train": max_train}, inputs, __name__)


def build_finetune(
    model: ModelConfig,
    cfg: FinetuneConfig,
    data_key: str,
    mask_key: str | None,
    store: str,
    max_train: int = 0,
    on_progress: ProgressFn | None = None,
) -> str:
    st = ArtifactStore(store)
    key = finetune_key(model, cfg, data_key, mask_key, max_train=max_train)

    run_dir = st.cache_dir.parent / "runs" / f"{STAGE}-{key}"  # checkpoints survive a killed run

    def build(out: Path) -> dict[str, Any]:
        dataset = st.open("data", data_key).local_dir()
        mask_path = st.open("select", mask_key).local_path(MASK_FILE) if mask_key else None
        if cfg.processes > 1 or cfg.nodes > 1:  # torchrun: one process per GPU (gloo on CPU)
            run_dir.mkdir(parents=True, exist_ok=True)
            spec = LaunchSpec(model.model_dump(mode="json"), cfg.model_dump(mode="json"), str(dataset),
                              str(run_dir), str(out), str(mask_path) if mask_path else None,
                              mask_key or "", max_train, data_key)  # fmt: skip
            if cfg.nodes > 1:  # this pod is node 0 of the multi-node job template
                code = lead(spec, cfg.processes, Rendezvous.from_env(), on_progress=on_progress)
            else:
                code = run_torchrun(
                    spec.write(run_dir / "launch.json"), cfg.processes, on_progress=on_progress
                )
            if code != 0:
                raise RuntimeError(f"torchrun exited with {code}; checkpoints kept in {run_dir}")
            metrics = dict(json.loads((out / METRICS).read_text()))
            (out / METRICS).unlink()  # the ranks' report to this task (with timings), not a result file
            return metrics
        loaded = load_mllm(model)
        samples = load_samples(dataset, "train", limit=max_train or None)
        mask = NeuronMask.load(mask_path) if mask_path else None
        return finetune(
            loaded,
            samples,
            cfg,
            mask,
            run_dir,
            out,
            mask_ref=mask_key or "",
            data_ref=data_key,
            on_progress=on_progress,
            progress=not local_display(),
        )

    inputs = {**model_input(model), "data": data_key, **({"mask": mask_key} if mask_key else {})}
    params = {**cfg.model_dump(mode="json"), "max_train": max_train}
    published = publish(store, STAGE, key, params=params, inputs=inputs, module=__name__, build=build)
    # the artifact holds the result; the checkpoints only served a resume (1.2 GB after one claim run)
    shutil.rmtree(run_dir, ignore_errors=True)
    return published


@task(
    name="finetune",
    cache_key_fn=store_cache(STAGE, finetune_key),
    persist_result=True,
    result_serializer="json",
)
def finetune_task(
    model: ModelConfig,
    cfg: FinetuneConfig,
    data_key: str,
    mask_key: str | None,
    store: str,
    max_train: int = 0,
) -> str:
    """Train one method; emits mnaft.checkpoint.created so re-profiling can follow."""
    with stage_progress(STAGE, finetune_key(model, cfg, data_key, mask_key, max_train=max_train),
                        f"fine-tuning ({cfg.method}, seed {cfg.seed})") as on_progress:  # fmt: skip
        key = build_finetune(model, cfg, data_key, mask_key, store, max_train, on_progress)
    art = ArtifactStore(store).open(STAGE, key)
    m = art.manifest.metrics
    create_table_artifact(key=f"finetune-{cfg.method}", table=[{"key": key, **m}], description=key)
    create_markdown_artifact(
        key=artifact_key(f"finetune-{cfg.method}-run"),
        markdown=f"# Fine-tuning run `{key}` ({cfg.method}, seed {cfg.seed})\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in m.items() if not isinstance(v, dict | list))
        + "\n\n"
        + inputs_markdown(store, STAGE, key),
        description=key,
    )
    emit_event(
        CHECKPOINT_EVENT,
        resource={
            "prefect.resource.id": f"mnaft.checkpoint.{key}",
            "mnaft.store": store,
            "mnaft.path": art.url(MODEL_DIR),
            "mnaft.method": cfg.method,
        },
        payload={"key": key, "store": store, "model_dir": MODEL_DIR, "metrics": m},
    )
    return key
