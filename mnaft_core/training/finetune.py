"""The finetune stage as one call: a loaded model + training samples (+ mask) -> a trained checkpoint.

Training is always on the image-translation task itself (image + instruction -> translation), each
batch one direction, so mnaft can switch on that direction's language-specific neurons.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mnaft_core._base import ProgressFn
from mnaft_core.data.dataset import Sample
from mnaft_core.models.loading import LoadedModel
from mnaft_core.models.prompts import Example, encode, model_inputs
from mnaft_core.selection.mask import NeuronMask, model_fingerprint
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.export import export_dtype, save_checkpoint, save_neuron_delta
from mnaft_core.training.methods import prepare
from mnaft_core.training.trainer import METRICS_LOG, TrainResult, train, world

MODEL_DIR = "model"
DELTA_FILE = "neuron_delta.safetensors"
RUN_ONLY = ("seconds", "tokens_per_s", "tokens", "resumed_from")  # about one run, not its result


def image_translation_collate(processor: Any, samples: Sequence[Sample]):  # type: ignore[no-untyped-def]
    """The trainer's collate: (direction, indices) -> (languages, inputs) for image translation."""

    def collate(_direction: str, indices: Sequence[int]) -> tuple[tuple[str, ...], dict[str, torch.Tensor]]:
        chosen = [samples[i] for i in indices]
        examples = [
            Example("translate_image", s.src, s.tgt, image=s.pil(), target=s.tgt_text) for s in chosen
        ]
        return (chosen[0].src, chosen[0].tgt), model_inputs(
            encode(processor, examples, with_target=True), "cpu"
        )

    return collate


def finetune(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    cfg: FinetuneConfig,
    mask: NeuronMask | None,
    run_dir: Path,
    out_dir: Path,
    *,
    mask_ref: str = "",
    data_ref: str = "",
    progress: bool = True,
    on_progress: ProgressFn | None = None,
    device: torch.device | None = None,
    after_training: Callable[[torch.nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Train, then save the merged model as a standard checkpoint (base dtype, processor, model card) and,
    for mnaft, the neuron delta of the saved weights; returns metrics.

    ``device``: where to train (default: where the model was loaded; FSDP2 loads on the CPU).
    ``after_training`` is called with the trained module on every rank, before the export (the launcher
    checks there that the replicas agree).
    """
    model = loaded.model
    if getattr(model, "hf_device_map", None):
        raise ValueError(
            "model.device_map is for profiling, evaluation and translate; a model too large for one "
            "device trains sharded: finetune.settings.processes: N with sharding: fsdp"
        )
    fingerprint = model_fingerprint(model) if mask is not None else None
    torch.manual_seed(cfg.seed)  # LoRA's initialisation is random: the seed makes a run repeatable
    trainable = prepare(model, cfg, mask, fingerprint)
    result: TrainResult = train(
        trainable,
        [s.direction for s in samples],
        image_translation_collate(loaded.processor, samples),
        cfg,
        run_dir,
        device or loaded.device,
        progress=progress,
        on_progress=on_progress,
    )
    if after_training is not None:
        after_training(trainable.module)
    if world()[0] != 0:  # under torchrun, rank 0 writes the checkpoint (and alone holds FSDP's gather)
        return {"method": cfg.method, "steps": result.steps, "final_loss": result.final_loss}
    merged = trainable.merged()
    out_dir.mkdir(parents=True, exist_ok=True)
    card = {
        "base_model": loaded.source,
        "method": cfg.method,
        "mask_ref": mask_ref,
        "data_ref": data_ref,
        "scores": {"final training loss": round(result.final_loss, 4)} if result.final_loss else None,
    }
    dtype = export_dtype(cfg.save_dtype, loaded.saved_dtype)
    save_checkpoint(merged, loaded.processor, out_dir / MODEL_DIR, dtype=dtype, card=card)
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "seconds": round(result.seconds, 2),
        "tokens": result.tokens,
        "trainable_params": result.trainable_params,
        "optimizer_state_bytes": result.optimizer_state_bytes,
        "resumed_from": result.resumed_from,
        "train_samples": len(samples),
        "saved_dtype": str(dtype or next(merged.parameters()).dtype).removeprefix("torch."),
    }
    if mask is not None and cfg.method == "mnaft":
        metrics["delta_values"] = save_neuron_delta(merged, mask, out_dir / DELTA_FILE, mask_ref)
    # The published files hold results only: timings and how the run went (resumed or not) differ
    # between runs of the same key, so they go to the manifest's metrics (the returned dict), and a
    # resumed run publishes the same bytes as an uninterrupted one.
    log = run_dir / METRICS_LOG
    if log.exists():
        rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        (out_dir / METRICS_LOG).write_text(
            "".join(json.dumps({k: v for k, v in r.items() if k not in RUN_ONLY}) + "\n" for r in rows)
        )
    summary = {k: v for k, v in metrics.items() if k not in RUN_ONLY}
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return metrics
