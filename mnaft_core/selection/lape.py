"""Language activation probability entropy (LAPE; Tang et al., 2024), extended with MNAFT's agnostic class.

Input: per-language activation counts of every neuron of one module (vision encoder or language model),
stacked over layers. For neuron j of layer i and language k the activation probability is
``p[i, j, k] = active[i, j, k] / tokens[k]``. LAPE normalises a neuron's probabilities over languages and
takes their entropy: a low entropy means the neuron fires for one or a few languages.

Selection follows the published procedure (the authors' ``identify.py``):

1. ``bar`` = the ``filter_rate`` quantile (``kthvalue`` at ``round(n * rate)``) of all probabilities;
2. candidates are neurons with at least one language above ``bar``;
3. the ``top_rate`` share of all neurons with the lowest entropy among the candidates is selected;
4. a selected neuron belongs to each language whose probability exceeds ``activation_bar`` (the
   ``activation_bar_ratio`` quantile, again over all probabilities).

MNAFT adds language-agnostic neurons: probability above ``activation_bar`` in every language. A neuron
that qualifies as both stays language-specific only if it has at least one language below the bar, so
the two classes are disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from mnaft_core._base import StrictModel


class LapeConfig(StrictModel):
    """Thresholds of LAPE selection; defaults are the paper's."""

    top_rate: float = Field(
        0.01, gt=0.0, le=1.0, description="share of all neurons selected as language-specific"
    )
    filter_rate: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        description="quantile of activation probability a candidate must exceed somewhere",
    )
    activation_bar_ratio: float = Field(
        0.95, ge=0.0, le=1.0, description="quantile above which a neuron counts as active for a language"
    )


@dataclass(frozen=True)
class LapeResult:
    """Per-neuron outputs, shaped (layers, neurons[, languages])."""

    prob: NDArray[np.float64]  # (L, N, K) activation probability per language
    entropy: NDArray[np.float64]  # (L, N) LAPE; +inf where the neuron never fires
    specific: NDArray[np.bool_]  # (L, N) selected as language-specific
    languages: NDArray[np.bool_]  # (L, N, K) language membership of the specific neurons
    agnostic: NDArray[np.bool_]  # (L, N) above the bar in every language (and not specific)
    filter_bar: float
    activation_bar: float


def kth_smallest(values: NDArray[np.float64], rate: float) -> float:
    """``torch.kthvalue(values.flatten(), round(n * rate))``: the reference's quantile convention."""
    flat = np.sort(values.ravel())
    k = min(max(round(flat.size * rate), 1), flat.size)
    return float(flat[k - 1])


def activation_probability(active: NDArray[np.integer], tokens: NDArray[np.integer]) -> NDArray[np.float64]:
    """``active`` (L, N, K) counts over ``tokens`` (K,); a language without tokens is an error."""
    tokens = np.asarray(tokens)
    if active.ndim != 3 or tokens.shape != (active.shape[-1],):
        raise ValueError(f"expected active (L, N, K) and tokens (K,), got {active.shape} and {tokens.shape}")
    if (tokens <= 0).any():
        missing = [int(k) for k in np.flatnonzero(tokens <= 0)]
        raise ValueError(f"languages at positions {missing} have no tokens: profile them before selecting")
    if (active < 0).any() or (active > tokens).any():
        raise ValueError("active counts must lie in [0, tokens] for every language")
    return np.asarray(active, dtype=np.float64) / tokens.astype(np.float64)


def lape_entropy(prob: NDArray[np.float64]) -> NDArray[np.float64]:
    """Entropy of each neuron's probabilities normalised over languages; +inf for a neuron never active."""
    total = prob.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = np.where(total > 0, prob / np.where(total > 0, total, 1.0), 0.0)
        logp = np.where(normed > 0, np.log(np.where(normed > 0, normed, 1.0)), 0.0)
    ent = -(normed * logp).sum(axis=-1)
    return np.where(total[..., 0] > 0, ent, np.inf)


def select_lape(prob: NDArray[np.float64], cfg: LapeConfig | None = None) -> LapeResult:
    cfg = cfg or LapeConfig()
    if prob.ndim != 3 or prob.shape[-1] < 2:
        raise ValueError(f"LAPE needs probabilities shaped (layers, neurons, languages>=2), got {prob.shape}")
    n_layers, n_neurons, _ = prob.shape
    entropy = lape_entropy(prob)
    filter_bar = kth_smallest(prob, cfg.filter_rate)
    candidate = (prob > filter_bar).any(axis=-1)
    ranked = np.where(candidate, entropy, np.inf).ravel()
    n_select = round(ranked.size * cfg.top_rate)
    # stable argsort: ties resolve to the lower flat index, deterministic across runs
    order = np.argsort(ranked, kind="stable")[:n_select]
    order = order[np.isfinite(ranked[order])]  # never select a non-candidate to fill the quota
    specific = np.zeros(n_layers * n_neurons, dtype=bool)
    specific[order] = True
    specific = specific.reshape(n_layers, n_neurons)
    activation_bar = kth_smallest(prob, cfg.activation_bar_ratio)
    above = prob > activation_bar
    languages = above & specific[..., None]
    agnostic = above.all(axis=-1)
    # a selected neuron above the bar in no language belongs to no language list, as in the reference
    specific &= ~agnostic & languages.any(axis=-1)
    languages &= specific[..., None]
    return LapeResult(prob, entropy, specific, languages, agnostic & ~specific, filter_bar, activation_bar)
