"""The profiling loop: conditions x samples -> shards -> on-device statistics -> Zarr, resumable.

A condition is one direction with its source given either as an image (the image-translation
instruction) or as text (the same instruction with the source text): the modality contrast MNAFT reads
neurons from. Each shard is one condition over a fixed slice of samples, so a killed run redoes only
its unfinished shards, and workers given disjoint shard lists can fill one store together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import zarr
from PIL import Image
from pydantic import Field, model_validator
from torch import nn
from tqdm.auto import tqdm

from mnaft_core._base import ProgressFn, StrictModel
from mnaft_core.data.dataset import Sample
from mnaft_core.models.adapters import MlpSite, neuron_sites
from mnaft_core.models.placement import input_device
from mnaft_core.models.prompts import IGNORE, Example, encode, instruction, model_inputs
from mnaft_core.profiling.stats import GROUPS, GradientRecorder, HostStats, ModuleRecorder, recording
from mnaft_core.profiling.zarr_stats import (
    Condition,
    ModuleShape,
    ShardWriter,
    create_layout,
    pending_shards,
)

Modality = Literal["image", "text"]
_TASK: dict[str, Any] = {"image": "translate_image", "text": "translate_text"}


class ProfileConfig(StrictModel):
    """What is profiled and how."""

    split: Literal["train", "val", "test"] = Field("train", description="dataset split to profile on")
    max_samples_per_direction: int = Field(256, ge=1, description="samples per direction (hash order)")
    modalities: tuple[Modality, ...] = Field(
        ("image", "text"), min_length=1, description="source given as image and/or as text"
    )
    teacher_forcing: bool = Field(True, description="append the reference translation as the response")
    taylor: bool = Field(
        True, description="first-order Taylor importance |a * dL/da| (needs teacher forcing)"
    )
    gradient: bool = Field(
        False,
        description="also sum |dL/dW| over each neuron's weight slices (its rows of up/gate/fc1, its column "
        "of down/fc2) per teacher-forced batch: the gradient selector's score (needs teacher forcing)",
    )
    activation: Literal["act", "product"] = Field(
        "act", description="act = activation-function output (LAPE); product = gated product fed to down"
    )
    batch_size: int = Field(16, ge=1, description="samples per forward pass")
    shard_size: int = Field(64, ge=1, description="samples per shard (the unit of resume and of workers)")
    chunk_tokens: int = Field(
        2048,
        ge=1,
        le=1_048_576,
        description="tokens per chunk of the statistics scratch: bounds it to 4 x chunk_tokens x MLP width "
        "float32 values per module whatever the batch length (same statistics)",
    )
    sample_means: bool = Field(
        False, description="also store each sample's mean activation per neuron (float16), for clustering"
    )

    @model_validator(mode="after")
    def _taylor_needs_loss(self) -> ProfileConfig:
        if self.taylor and not self.teacher_forcing:
            raise ValueError("taylor importance needs a loss: set teacher_forcing: true or taylor: false")
        if self.gradient and not self.teacher_forcing:
            raise ValueError("gradient needs a loss: set teacher_forcing: true or gradient: false")
        return self


@dataclass(frozen=True)
class Shard:
    condition: int
    start: int
    stop: int


@dataclass(frozen=True)
class Plan:
    conditions: tuple[Condition, ...]
    samples: dict[str, list[Sample]]  # direction "src-tgt" -> samples
    shards: tuple[Shard, ...]


def plan(samples: Iterable[Sample], cfg: ProfileConfig) -> Plan:
    """Conditions and shards, a pure function of the samples and the config."""
    by_dir: dict[str, list[Sample]] = {}
    for s in samples:
        group = by_dir.setdefault(s.direction, [])
        if len(group) < cfg.max_samples_per_direction:
            group.append(s)
    if not by_dir:
        raise ValueError(f"no samples to profile in split {cfg.split!r}")
    conditions: list[Condition] = []
    shards: list[Shard] = []
    for d in sorted(by_dir):
        first = by_dir[d][0]
        for modality in cfg.modalities:
            c = len(conditions)
            conditions.append(Condition(first.src, first.tgt, modality))
            n = len(by_dir[d])
            shards += [Shard(c, i, min(i + cfg.shard_size, n)) for i in range(0, n, cfg.shard_size)]
    return Plan(tuple(conditions), by_dir, tuple(shards))


def _modules(sites: Sequence[MlpSite], model: nn.Module) -> dict[str, list[MlpSite]]:
    out: dict[str, list[MlpSite]] = {}
    for s in sites:
        out.setdefault(s.module, []).append(s)
    for module, group in out.items():
        widths = {s.width(model) for s in group}
        if len(widths) != 1:
            raise ValueError(f"{module}: MLP widths differ across layers {sorted(widths)}; not supported")
    return out


def _examples(samples: Sequence[Sample], modality: str, with_target: bool) -> list[Example]:
    return [
        Example(
            _TASK[modality],
            s.src,
            s.tgt,
            text=s.src_text if modality == "text" else None,
            image=s.pil() if modality == "image" else None,
            target=s.tgt_text if with_target else None,
        )
        for s in samples
    ]


def prompt_templates(languages: tuple[str, str] = ("{src}", "{tgt}")) -> dict[str, str]:
    """The instruction of each condition modality, for the profile's attributes."""
    src, tgt = languages
    img = Image.new("RGB", (1, 1))
    return {
        m: instruction(Example(_TASK[m], src, tgt, text="{source text}", image=img if m == "image" else None))
        for m in ("image", "text")
    }


def _shard_samples(the_plan: Plan, shard: Shard) -> list[Sample]:
    cond = the_plan.conditions[shard.condition]
    return the_plan.samples[f"{cond.src}-{cond.tgt}"][shard.start : shard.stop]


def run_profile(
    model: nn.Module,
    processor: Any,
    the_plan: Plan,
    cfg: ProfileConfig,
    out: str | Path,
    attrs: Mapping[str, Any],
    *,
    only_shards: Sequence[int] | None = None,
    progress: bool = True,
    on_progress: ProgressFn | None = None,
) -> zarr.Group:
    """Profile every pending shard (or those of ``only_shards``) into the Zarr store at ``out``."""
    device = input_device(model)  # a model split by device_map: where its first block runs
    modules = _modules(neuron_sites(model), model)
    shapes = {m: ModuleShape(len(g), g[0].width(model), tuple(s.path for s in g)) for m, g in modules.items()}
    extra: dict[str, Any] = {"config": cfg.model_dump(mode="json"), "templates": prompt_templates()}
    if cfg.sample_means:
        extra["sample_ids"] = [[s.id for s in _shard_samples(the_plan, sh)] for sh in the_plan.shards]
    root = create_layout(
        out,
        the_plan.conditions,
        [s.condition for s in the_plan.shards],
        shapes,
        {**attrs, **extra},
        sample_slots=cfg.shard_size if cfg.sample_means else 0,
        gradient=cfg.gradient,
    )
    recorders = {
        m: ModuleRecorder(
            g,
            shapes[m].neurons,
            device,
            point=cfg.activation,
            taylor=cfg.taylor,
            constant_group=GROUPS.index("image") if m == "vision" else None,
            sample_slots=cfg.shard_size if cfg.sample_means else 0,
            chunk_tokens=cfg.chunk_tokens,
        )
        for m, g in modules.items()
    }
    todo = [i for i in pending_shards(root) if only_shards is None or i in set(only_shards)]
    requires = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)  # Taylor needs dL/da only: no parameter gradients are stored for it
    gradients = _gradient_recorders(model, modules, device) if cfg.gradient else {}
    embed_hook = (
        model.get_input_embeddings().register_forward_hook(lambda _m, _i, o: o.requires_grad_(True))  # type: ignore[operator]
        if cfg.taylor
        else None
    )
    total = sum(the_plan.shards[i].stop - the_plan.shards[i].start for i in todo)
    bar = tqdm(total=total, desc="profile", unit="sample", disable=None if progress else True)
    done = 0
    try:
        with ShardWriter(root) as writer, recording(model, list(recorders.values())):
            for i in todo:
                shard = the_plan.shards[i]
                modality = the_plan.conditions[shard.condition].modality
                samples = _shard_samples(the_plan, shard)
                for b in range(0, len(samples), cfg.batch_size):
                    chunk = samples[b : b + cfg.batch_size]
                    for rec in recorders.values():
                        rec.sample_offset, rec.batch_samples = b, len(chunk)
                    _step(model, processor, recorders, chunk, modality, cfg, device)
                    for grad in gradients.values():
                        grad.collect()
                    bar.update(len(chunk))
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
                stats: dict[str, HostStats] = {m: r.flush() for m, r in recorders.items()}
                for m, grad in gradients.items():
                    stats[m].gradient = grad.flush()
                means = {m: r.flush_samples() for m, r in recorders.items()} if cfg.sample_means else None
                writer.submit(i, stats, means)  # written in the background while the next shard runs
    finally:
        bar.close()
        if embed_hook is not None:
            embed_hook.remove()
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
            p.grad = None
    return root


def _gradient_recorders(
    model: nn.Module, modules: Mapping[str, list[MlpSite]], device: torch.device
) -> dict[str, GradientRecorder]:
    """Per module, the weights of every layer's neurons (up/gate/fc1 rows, down/fc2 column), switched to
    require gradients so the backward computes dL/dW for them (biases are left out)."""
    out = {}
    for m, sites in modules.items():
        layers = []
        for site in sites:
            group = []
            for name, (_kind, axis) in site.parameter_slices(model).items():
                if name.endswith(".weight"):
                    p = model.get_parameter(name)
                    p.requires_grad_(True)
                    group.append((p, axis))
            layers.append(group)
        out[m] = GradientRecorder(layers, sites[0].width(model), device)
    return out


def _step(
    model: nn.Module,
    processor: Any,
    recorders: Mapping[str, ModuleRecorder],
    chunk: Sequence[Sample],
    modality: str,
    cfg: ProfileConfig,
    device: torch.device,
) -> None:
    batch = encode(
        processor, _examples(chunk, modality, cfg.teacher_forcing), with_target=cfg.teacher_forcing
    )
    if "language" in recorders:
        recorders["language"].group_ids = batch["token_groups"].reshape(-1).to(device)
    if "vision" in recorders and "image_grid_thw" in batch:  # Qwen2-VL towers: one packed sequence
        recorders["vision"].sample_sizes = batch["image_grid_thw"].prod(-1).cpu()
    inputs = model_inputs(batch, device)
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(next(model.parameters()).dtype)
        if cfg.taylor:
            inputs["pixel_values"].requires_grad_(True)
    if cfg.taylor or cfg.gradient:
        # The summed (not mean) token loss keeps each token's dL/da independent of who shares its batch.
        n_targets = (inputs["labels"][:, 1:] != IGNORE).sum()
        with torch.enable_grad():
            (model(**inputs).loss * n_targets).backward()
    else:
        with torch.no_grad():
            model(**inputs)
