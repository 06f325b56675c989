"""Pictures of the selection: where language-specific neurons live, and how neurons and samples cluster."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from numpy.typing import NDArray

_CLASS_COLOURS = {"specific": "#d62728", "agnostic": "#1f77b4", "unselected": "#c7c7c7"}


def _languages(neurons: pl.DataFrame) -> list[str]:
    return [c.removeprefix("p_") for c in neurons.columns if c.startswith("p_")]


def specific_heatmaps(layers: pl.DataFrame, out: Path) -> Path:
    """Language-specific neuron counts per layer x language, one panel per module."""
    langs = [
        c.removeprefix("n_specific_")
        for c in layers.columns
        if c.startswith("n_specific_") and c != "n_specific_lape"
    ]
    modules = layers["module"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(modules), figsize=(4 + 2.5 * len(modules), 4.5), squeeze=False)
    for ax, module in zip(axes[0], modules, strict=True):
        sub = layers.filter(pl.col("module") == module).sort("layer")
        grid = np.stack([sub[f"n_specific_{lang}"].to_numpy() for lang in langs], axis=1)
        im = ax.imshow(grid, aspect="auto", cmap="magma", origin="lower")
        ax.set_xticks(range(len(langs)), langs, rotation=45, ha="right")
        ax.set_ylabel("layer")
        ax.set_title(f"{module}: language-specific neurons")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def probability_distribution(neurons: pl.DataFrame, out: Path) -> Path:
    """Histogram of activation probabilities per module, all languages pooled, log count axis."""
    langs = _languages(neurons)
    modules = neurons["module"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(modules), figsize=(5 * len(modules), 3.5), squeeze=False)
    for ax, module in zip(axes[0], modules, strict=True):
        sub = neurons.filter(pl.col("module") == module)
        for lang in langs:
            ax.hist(sub[f"p_{lang}"].to_numpy(), bins=50, range=(0, 1), histtype="step", label=lang)
        ax.set_yscale("log")
        ax.set_xlabel("activation probability")
        ax.set_title(module)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def pca_2d(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """First two principal components (SVD of the centred data); deterministic sign."""
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[0] < 2 or not np.any(x):
        return np.zeros((x.shape[0], 2))
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = u[:, :2] * s[:2]
    signs = np.sign(vt[:2, np.argmax(np.abs(vt[:2]), axis=1)].diagonal())
    comps = comps * np.where(signs == 0, 1, signs)
    return comps if comps.shape[1] == 2 else np.pad(comps, ((0, 0), (0, 2 - comps.shape[1])))


def neuron_embedding(neurons: pl.DataFrame, out: Path, max_points: int = 20000, seed: int = 0) -> Path:
    """Neurons placed by their normalised per-language activation profile, coloured by class."""
    langs = _languages(neurons)
    modules = neurons["module"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(modules), figsize=(5 * len(modules), 4.5), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, module in zip(axes[0], modules, strict=True):
        sub = neurons.filter(pl.col("module") == module)
        # always show every selected neuron; subsample the unselected background
        sel = sub.filter(pl.col("class") != "unselected")
        rest = sub.filter(pl.col("class") == "unselected")
        if rest.height > max_points:
            rest = rest[rng.choice(rest.height, max_points, replace=False).tolist()]
        sub = pl.concat([rest, sel])
        prof = sub.select([f"p_{lang}" for lang in langs]).to_numpy()
        total = prof.sum(axis=1, keepdims=True)
        prof = np.divide(prof, total, out=np.zeros_like(prof), where=total > 0)
        xy = pca_2d(prof)
        classes = sub["class"].to_list()
        for cls, colour in _CLASS_COLOURS.items():
            m = np.array([c == cls for c in classes])
            if m.any():
                ax.scatter(
                    xy[m, 0], xy[m, 1], s=4 if cls == "unselected" else 10, c=colour, label=cls, alpha=0.7
                )
        ax.set_title(f"{module}: neurons by language profile (PCA)")
        ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def sample_embedding(
    means: NDArray[np.floating],
    languages: list[str],
    classes: NDArray[np.str_],
    out: Path,
    modalities: list[str] | None = None,
    title: str = "",
) -> Path:
    """Samples placed by their mean activation on specific vs agnostic neurons, coloured by language.

    ``means`` is (samples, neurons) of one module, ``classes`` the class of each neuron column; with
    ``modalities`` the marker tells image from text input (where the modality gap shows).
    """
    markers = {"image": "o", "text": "^"}
    mods = modalities or ["image"] * len(languages)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, cls in zip(axes, ("specific", "agnostic"), strict=True):
        cols = classes == cls
        if not cols.any() or len(languages) < 3:
            ax.set_title(f"{title}no {cls} neurons" if not cols.any() else f"{title}too few samples")
            continue
        xy = pca_2d(np.nan_to_num(means[:, cols].astype(np.float64)))
        for lang in sorted(set(languages)):
            for mod in sorted(set(mods)):
                m = np.array([lg == lang and md == mod for lg, md in zip(languages, mods, strict=True)])
                if m.any():
                    label = f"{lang} ({mod})" if modalities else lang
                    ax.scatter(xy[m, 0], xy[m, 1], s=8, label=label, alpha=0.7, marker=markers.get(mod, "s"))
        n = int(cols.sum())
        ax.set_title(f"{title}samples by mean activation on {n} {cls} neurons (PCA)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
