"""Pictures of the specificity test: observed entropies against their permutation null, and the
image- vs text-instruction overlap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from numpy.typing import NDArray


def specificity_plot(
    table: pl.DataFrame, null_draws: dict[str, NDArray[np.float64]], metrics: dict[str, Any], out: Path
) -> Path:
    """Per module: the selected neurons' observed entropies over their pooled null; and every firing
    neuron's sorted p-values against the Benjamini-Hochberg line (``SpecificityResult``'s parts)."""
    modules = table["module"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(2, len(modules), figsize=(5 * len(modules), 7), squeeze=False)
    fdr = metrics["fdr"]
    sig = table.filter(pl.col("significant"))["p_value"].to_numpy()
    cutoff = float(sig.max()) if sig.size else None  # BH runs over all modules together
    for col, module in enumerate(modules):
        sub = table.filter(pl.col("module") == module)
        sel = sub.filter(pl.col("selected"))
        ax = axes[0, col]
        null = null_draws.get(module, np.zeros((0, 0))).ravel()
        obs = sel["entropy"].to_numpy()
        null, obs = null[np.isfinite(null)], obs[np.isfinite(obs)]
        if obs.size:
            lo = min(obs.min(), null.min() if null.size else obs.min())
            hi = max(obs.max(), null.max() if null.size else obs.max())
            bins = np.linspace(lo, hi + 1e-9, 60)
            if null.size:
                ax.hist(null, bins=bins, density=True, alpha=0.5, color="#7f7f7f", label="null (permuted)")
            ax.hist(obs, bins=bins, density=True, histtype="step", lw=2, color="#d62728", label="observed")
            if metrics.get("max_entropy"):
                ax.axvline(metrics["max_entropy"], ls=":", c="k", label="ln K")
            ax.legend(fontsize=7)
        d = metrics["modules"][module]
        ax.set_title(f"{module}: {d['significant']} of {d['selected']} selected beat the null", fontsize=9)
        ax.set_xlabel("LAPE entropy of the selected language-specific neurons")
        ax = axes[1, col]
        p = np.sort(sub.filter(pl.col("fires"))["p_value"].to_numpy())
        if p.size:
            ax.loglog(np.arange(1, p.size + 1), p, ".", ms=2, label="p (sorted)")
            if cutoff is not None:
                ax.axhline(cutoff, c="#d62728", label=f"BH cutoff at FDR {fdr} (all modules)")
            ax.axhline(d["min_p"], ls=":", c="k", label="smallest attainable p")
            ax.legend(fontsize=7)
        ax.set_xlabel("rank among firing neurons")
        ax.set_title(f"{module}: {d['discoveries']} discoveries of {d['tested']} tested", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def overlap_plot(overlap: pl.DataFrame, out: Path) -> Path:
    """Jaccard of the image- and text-instruction neuron sets per layer, per class, with chance."""
    modules = overlap["module"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(modules), figsize=(5 * len(modules), 3.5), squeeze=False)
    for ax, module in zip(axes[0], modules, strict=True):
        sub = overlap.filter(pl.col("module") == module)
        for i, (cls, colour) in enumerate((("specific", "#d62728"), ("agnostic", "#1f77b4"))):
            g = sub.filter(pl.col("class") == cls).sort("layer")
            x = g["layer"].to_numpy() + (i - 0.5) * 0.35
            jac = np.nan_to_num(g["jaccard"].to_numpy(), nan=0.0)
            ax.bar(x, jac, width=0.35, color=colour, label=cls)
            ch = g["chance_jaccard"].to_numpy()
            ax.plot(x, ch, "_", ms=12, c="k", label="chance" if i == 0 else None)
        ax.set_ylim(0, 1)
        ax.set_xticks(sorted(set(sub["layer"].to_list())))
        ax.set_xlabel("layer")
        ax.set_ylabel("Jaccard (image vs text instruction)")
        ax.set_title(module)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
