"""From per-condition statistics to per-language statistics, the input of every selector.

Which language a token's statistic belongs to:
- vision encoder: the language of the text in the image, i.e. the source language;
- language model: the source language at image and instruction positions, the target language at
  response positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mnaft_core.profiling.stats import GROUPS, HostStats
from mnaft_core.profiling.zarr_stats import Condition

_RESPONSE = GROUPS.index("response")


@dataclass(frozen=True)
class LanguageStats:
    """One module's statistics per language: arrays (L, N, K) and tokens (K,)."""

    languages: tuple[str, ...]
    tokens: NDArray[np.float64]
    active: NDArray[np.float64]
    sum: NDArray[np.float64]
    sumsq: NDArray[np.float64]
    taylor: NDArray[np.float64]
    gradient: NDArray[np.float64] | None = None  # (L, N) over all conditions; None unless profiled

    @property
    def prob(self) -> NDArray[np.float64]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.tokens > 0, self.active / np.where(self.tokens > 0, self.tokens, 1), 0.0)

    @property
    def mean(self) -> NDArray[np.float64]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.tokens > 0, self.sum / np.where(self.tokens > 0, self.tokens, 1), 0.0)


def per_language(
    module: str, totals: Mapping[int, HostStats], conditions: Sequence[Condition], languages: Sequence[str]
) -> LanguageStats:
    """Fold each condition's (group, layer, neuron) totals into the languages they belong to."""
    k_of = {lang: k for k, lang in enumerate(languages)}
    first = next(iter(totals.values()))
    _, n_layers, n_neurons = first.active.shape
    shape = (n_layers, n_neurons, len(languages))
    acc = {name: np.zeros(shape) for name in ("active", "sum", "sumsq", "taylor")}
    tokens = np.zeros(len(languages))
    for c, st in totals.items():
        cond = conditions[c]
        for g in range(len(GROUPS)):
            lang = cond.tgt if (module == "language" and g == _RESPONSE) else cond.src
            if lang not in k_of:
                raise ValueError(f"condition {cond.name}: language {lang!r} is not among {list(languages)}")
            k = k_of[lang]
            tokens[k] += st.tokens[g]
            for name in acc:
                acc[name][..., k] += getattr(st, name)[g]
    grads = [st.gradient for st in totals.values() if st.gradient is not None]
    gradient = np.sum(grads, axis=0) if grads else None
    return LanguageStats(
        tuple(languages), tokens, acc["active"], acc["sum"], acc["sumsq"], acc["taylor"], gradient
    )
