"""The select stage as one call: a finished profile store in, the mask + tables + pictures out."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
import zarr

from mnaft_core.profiling.zarr_stats import Condition, condition_totals, sample_means
from mnaft_core.selection.aggregate import LanguageStats, per_language
from mnaft_core.selection.mask import MaskError
from mnaft_core.selection.select import SelectConfig, SelectionResult, select_neurons
from mnaft_core.selection.specificity import measure_specificity, modality_overlap, overlap_metrics
from mnaft_core.viz.neurons import (
    neuron_embedding,
    probability_distribution,
    sample_embedding,
    specific_heatmaps,
)
from mnaft_core.viz.specificity import overlap_plot, specificity_plot

MASK_FILE = "mask.safetensors"
SITE_PARAMETERS = "site_parameters"  # profile attribute: site path -> {parameter name: neuron axis}


def language_stats(root: zarr.Group) -> tuple[dict[str, LanguageStats], dict[str, list[str]]]:
    """Per-module statistics per language, and the site path of each profiled layer."""
    attrs: dict[str, Any] = dict(root.attrs)
    conditions = [Condition(c["src"], c["tgt"], c["modality"]) for c in attrs["conditions"]]
    languages = sorted({c.src for c in conditions} | {c.tgt for c in conditions})
    stats, sites = {}, {}
    for module, meta in attrs["modules"].items():
        totals = condition_totals(root, module)
        stats[module] = per_language(module, totals, conditions, languages)
        sites[module] = list(meta["sites"])
    return stats, sites


def select_from_profile(root: zarr.Group, cfg: SelectConfig) -> SelectionResult:
    """The selection, its mask sites carrying the parameter slices the profile recorded of the model,
    with what it measures: the specificity test and the modality overlap."""
    stats, sites = language_stats(root)
    result = select_neurons(
        stats, sites, cfg, str(root.attrs["fingerprint"]), str(root.attrs.get("data_key", ""))
    )
    recorded = cast(dict[str, dict[str, int]], root.attrs.get(SITE_PARAMETERS) or {})
    for path, site in result.mask.sites.items():
        if path not in recorded:
            raise MaskError(
                f"profile {root.store}: no parameter slices recorded for site {path} (attribute "
                f"{SITE_PARAMETERS!r}); profile the model again with this version"
            )
        site.parameters = dict(recorded[path])
    spec = measure_specificity(root, result.neurons, result.layers, cfg.specificity, cfg.seed)
    modules = [m for m in stats if m in cfg.modules]
    return replace(result, specificity=spec, overlap=modality_overlap(root, modules, cfg.lape))


def sample_pictures(root: zarr.Group, neurons: pl.DataFrame, out: Path) -> list[Path]:
    """Per module, samples embedded by their means on the specific vs the agnostic neurons (if profiled)."""
    if not root.attrs.get("sample_slots"):
        return []
    paths = []
    for module in neurons["module"].unique(maintain_order=True).to_list():
        sub = neurons.filter(
            (pl.col("module") == module) & pl.col("class").is_in(["specific", "agnostic"])
        ).sort("layer", "neuron")
        if sub.is_empty():
            continue
        by_layer = {int(k[0]): g["neuron"].to_list() for k, g in sub.group_by("layer", maintain_order=True)}
        sm = sample_means(root, module, by_layer)
        classes = np.asarray(sub["class"].to_list())
        path = out / f"sample_embedding_{module}.png"
        paths.append(
            sample_embedding(sm.means, sm.languages, classes, path, sm.modalities, title=f"{module}: ")
        )
    return paths


def write_selection(result: SelectionResult, out: Path, root: zarr.Group | None = None) -> dict[str, Any]:
    """mask.safetensors, neurons.parquet, layers.parquet, PNGs; returns the counts for the manifest.

    With the profile ``root``, also the per-sample embedding pictures when the profile kept sample means;
    with the result's specificity test and overlap, specificity.parquet, overlap.parquet and their PNGs.
    """
    out.mkdir(parents=True, exist_ok=True)
    result.mask.save(out / MASK_FILE)
    result.neurons.write_parquet(out / "neurons.parquet")
    result.layers.write_parquet(out / "layers.parquet")
    specific_heatmaps(result.layers, out / "specific_heatmap.png")
    probability_distribution(result.neurons, out / "activation_probability.png")
    neuron_embedding(result.neurons, out / "neuron_embedding.png")
    if root is not None:
        sample_pictures(root, result.neurons, out)
    counts = result.mask.counts()
    summary = {
        "method": result.mask.method,
        "sites": len(result.mask.sites),
        "neurons": {
            cls: int(result.neurons.filter(result.neurons["class"] == cls).height)
            for cls in ("specific", "agnostic")
        },
        "selected_layers": result.layers.filter(result.layers["selected"])
        .select("module", "layer")
        .to_dicts(),
        "counts": counts,
    }
    if result.specificity is not None:
        result.specificity.table.write_parquet(out / "specificity.parquet")
        spec = result.specificity
        specificity_plot(spec.table, spec.null, spec.metrics, out / "specificity.png")
        summary["specificity"] = result.specificity.metrics
    if result.overlap is not None:
        result.overlap.write_parquet(out / "overlap.parquet")
        if not result.overlap.is_empty():
            overlap_plot(result.overlap, out / "modality_overlap.png")
        summary["overlap"] = overlap_metrics(result.overlap)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
