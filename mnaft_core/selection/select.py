"""Neuron selection: LAPE classes + Taylor importance -> layer ranking -> mask; and the ablation baselines.

Baselines: ``random``, ``magnitude`` (activation RMS), ``taylor`` (``|a * dL/da|``), ``gradient``
(``sum |dL/dW|`` over each neuron's weight slices, SIFT's criterion at neuron granularity: needs a profile
with ``gradient: true``), and the class ablations ``agnostic``, ``specific``, ``layers``.
Every baseline spends the same per-layer budget as MNAFT's own selection (same layers, same number of
neurons per layer), so an ablation changes *which* neurons train, never how many.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray
from pydantic import Field

from mnaft_core._base import StrictModel
from mnaft_core.selection.aggregate import LanguageStats
from mnaft_core.selection.lape import LapeConfig, LapeResult, select_lape
from mnaft_core.selection.mask import NeuronMask, SiteMask
from mnaft_core.selection.specificity import SpecificityConfig, SpecificityResult

Method = Literal["mnaft", "random", "magnitude", "taylor", "gradient", "agnostic", "specific", "layers"]
METHODS: tuple[Method, ...] = (
    "mnaft", "random", "magnitude", "taylor", "gradient", "agnostic", "specific", "layers",
)  # fmt: skip


class SelectConfig(StrictModel):
    """How neurons are chosen from a profile."""

    method: Method = Field(
        "mnaft", description="mnaft, or an ablation baseline with the same per-layer budget"
    )
    lape: LapeConfig = Field(default_factory=LapeConfig, description="LAPE thresholds")
    layer_fraction: float = Field(
        0.5, gt=0.0, le=1.0, description="share of each module's layers kept, ranked by importance (ceil)"
    )
    modules: tuple[Literal["vision", "language"], ...] = Field(
        ("vision", "language"), min_length=1, description="modules whose neurons may be selected"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of the random baseline and the permutations")
    specificity: SpecificityConfig = Field(
        default_factory=SpecificityConfig,
        description="permutation test of the language-specific neurons against permuted language labels",
    )


@dataclass
class ModuleSelection:
    lape: LapeResult
    layers: NDArray[np.bool_]  # (L,) selected layers
    specific: NDArray[np.bool_]  # (L, N) after layer filtering and method
    languages: NDArray[np.bool_]  # (L, N, K)
    agnostic: NDArray[np.bool_]  # (L, N)
    relevance: NDArray[np.float64]  # (L,)


@dataclass
class SelectionResult:
    mask: NeuronMask
    neurons: pl.DataFrame
    layers: pl.DataFrame
    specificity: SpecificityResult | None = None  # needs the profile's shards: see from_profile
    overlap: pl.DataFrame | None = None  # image- vs text-instruction neurons, likewise


def _rank_layers(
    res: LapeResult, taylor: NDArray[np.float64], fraction: float
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    chosen = res.specific | res.agnostic
    importance = taylor.sum(axis=-1)  # (L, N)
    relevance = np.where(chosen, importance, 0.0).sum(axis=-1)
    if not relevance.any():  # importance not profiled: rank by how many neurons LAPE found
        relevance = chosen.sum(axis=-1).astype(np.float64)
    k = max(1, math.ceil(fraction * relevance.size))
    order = np.argsort(-relevance, kind="stable")[:k]
    keep = np.zeros(relevance.size, dtype=bool)
    keep[order] = True
    return keep, relevance


def _top_per_layer(score: NDArray[np.float64], budget: NDArray[np.int64]) -> NDArray[np.bool_]:
    out = np.zeros(score.shape, dtype=bool)
    for layer, b in enumerate(budget.tolist()):
        if b:
            out[layer, np.argsort(-score[layer], kind="stable")[:b]] = True
    return out


def select_module(stats: LanguageStats, cfg: SelectConfig, rng: np.random.Generator) -> ModuleSelection:
    res = select_lape(stats.prob, cfg.lape)
    keep, relevance = _rank_layers(res, stats.taylor, cfg.layer_fraction)
    specific = res.specific & keep[:, None]
    agnostic = res.agnostic & keep[:, None]
    languages = res.languages & specific[..., None]
    budget = (specific | agnostic).sum(axis=-1)
    empty_k = np.zeros_like(languages)
    if cfg.method == "mnaft":
        pass
    elif cfg.method == "agnostic":
        specific, languages = np.zeros_like(specific), empty_k
    elif cfg.method == "specific":
        agnostic = np.zeros_like(agnostic)
    elif cfg.method == "layers":
        specific, languages = np.zeros_like(specific), empty_k
        agnostic = np.broadcast_to(keep[:, None], agnostic.shape).copy()
    else:  # random / magnitude / taylor / gradient: same budget per layer, trained for every language
        if cfg.method == "random":
            score = rng.random(specific.shape)
        elif cfg.method == "magnitude":
            with np.errstate(invalid="ignore", divide="ignore"):
                rms = np.sqrt(stats.sumsq.sum(-1) / max(stats.tokens.sum(), 1.0))
            score = np.nan_to_num(rms)
        elif cfg.method == "gradient":  # SIFT's |dL/dW| at neuron granularity (profile.gradient)
            if stats.gradient is None:
                raise ValueError(
                    "the gradient selector needs the profile's gradient statistic: profile with "
                    "gradient: true"
                )
            score = stats.gradient
        else:
            score = stats.taylor.sum(-1)
        agnostic = _top_per_layer(score, budget)
        specific, languages = np.zeros_like(specific), empty_k
    return ModuleSelection(res, keep, specific, languages, agnostic, relevance)


def select_neurons(
    stats: Mapping[str, LanguageStats],
    sites: Mapping[str, list[str]],
    cfg: SelectConfig,
    fingerprint: str,
    data_key: str = "",
) -> SelectionResult:
    """Select per module and build the mask and the two tables. ``sites[module]`` = site path per layer."""
    rng = np.random.default_rng(cfg.seed)
    mask_sites: dict[str, SiteMask] = {}
    neuron_frames, layer_frames = [], []
    for module, st in stats.items():
        if module not in cfg.modules:
            continue
        sel = select_module(st, cfg, rng)
        n_layers, n_neurons, _ = st.active.shape
        if len(sites[module]) != n_layers:
            raise ValueError(f"{module}: {len(sites[module])} site paths for {n_layers} profiled layers")
        for layer, path in enumerate(sites[module]):
            if not (sel.specific[layer].any() or sel.agnostic[layer].any()):
                continue
            mask_sites[path] = SiteMask(
                module,
                layer,
                n_neurons,
                agnostic=np.flatnonzero(sel.agnostic[layer]).astype(np.int32),
                specific={
                    lang: np.flatnonzero(sel.languages[layer, :, k]).astype(np.int32)
                    for k, lang in enumerate(st.languages)
                    if sel.languages[layer, :, k].any()
                },
            )
        neuron_frames.append(_neuron_table(module, st, sel))
        layer_frames.append(_layer_table(module, st, sel))
    if not mask_sites:
        raise ValueError(
            f"selection ({cfg.method}) chose no neurons: lower lape thresholds or profile more data"
        )
    mask = NeuronMask(fingerprint, mask_sites, cfg.method, data_key, cfg.model_dump(mode="json"))
    return SelectionResult(
        mask, pl.concat(neuron_frames, how="vertical"), pl.concat(layer_frames, how="vertical")
    )


def _neuron_table(module: str, st: LanguageStats, sel: ModuleSelection) -> pl.DataFrame:
    n_layers, n_neurons, _ = st.active.shape
    layer_idx, neuron_idx = np.meshgrid(np.arange(n_layers), np.arange(n_neurons), indexing="ij")
    prob, taylor = st.prob, st.taylor
    cls = np.where(sel.agnostic, "agnostic", np.where(sel.specific, "specific", "unselected"))
    langs = [
        [st.languages[k] for k in np.flatnonzero(row)] for row in sel.languages.reshape(-1, len(st.languages))
    ]
    cols: dict[str, object] = {
        "module": [module] * (n_layers * n_neurons),
        "layer": layer_idx.ravel().astype(np.int32),
        "neuron": neuron_idx.ravel().astype(np.int32),
        "entropy": sel.lape.entropy.ravel(),
        "taylor": taylor.sum(-1).ravel(),
        "class": cls.ravel(),
        "languages": langs,
        "lape_specific": sel.lape.specific.ravel(),
        "lape_agnostic": sel.lape.agnostic.ravel(),
    }
    if st.gradient is not None:
        cols["gradient"] = st.gradient.ravel()
    for k, lang in enumerate(st.languages):
        cols[f"p_{lang}"] = prob[..., k].ravel()
        cols[f"taylor_{lang}"] = taylor[..., k].ravel()
    return pl.DataFrame(cols)


def _layer_table(module: str, st: LanguageStats, sel: ModuleSelection) -> pl.DataFrame:
    order = np.argsort(-sel.relevance, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, order.size + 1)
    return pl.DataFrame(
        {
            "module": [module] * sel.layers.size,
            "layer": np.arange(sel.layers.size, dtype=np.int32),
            "n_specific_lape": sel.lape.specific.sum(-1).astype(np.int32),
            "n_agnostic_lape": sel.lape.agnostic.sum(-1).astype(np.int32),
            "n_trained": (sel.specific | sel.agnostic).sum(-1).astype(np.int32),
            "importance": sel.relevance,
            "rank": rank.astype(np.int32),
            "selected": sel.layers,
            **{
                f"n_specific_{lang}": sel.languages[..., k].sum(-1).astype(np.int32)
                for k, lang in enumerate(st.languages)
            },
        }
    )
