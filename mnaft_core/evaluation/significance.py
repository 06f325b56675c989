"""Paired bootstrap resampling (Koehn, 2004) on sacrebleu's per-segment statistics, and seed statistics.

sacrebleu's own ``PairedTest`` counts only strictly larger bootstrap differences, so two identical
systems come out "significant" at p = 1/(n+1). Here the p-value is two-sided and tie-aware:
``p = min(1, 2 * min(P(delta <= 0), P(delta >= 0)))`` over resamples, smoothed by (count+1)/(n+1); two
identical systems get p = 1. Scores per resample come from summed sufficient statistics, as in sacrebleu,
so a resample costs a sum, not a re-tokenisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mnaft_core.evaluation.metrics import metrics_for


@dataclass(frozen=True)
class PairedResult:
    system: str
    metric: str
    score: float
    ci_low: float  # 95% bootstrap interval of the system's score
    ci_high: float
    p_value: float | None  # against the baseline; None for the baseline itself


def paired_bootstrap(
    baseline: str,
    outputs: Mapping[str, Sequence[str]],
    refs: Sequence[str],
    lang: str,
    n_samples: int = 1000,
    metrics: Sequence[str] = ("bleu", "chrf"),
    seed: int = 12345,
) -> list[PairedResult]:
    """Scores with 95% intervals, and p-values of each system against ``baseline``, on shared resamples."""
    if baseline not in outputs:
        raise ValueError(f"baseline {baseline!r} has no outputs")
    for name, hyps in outputs.items():
        if len(hyps) != len(refs):
            raise ValueError(f"system {name!r}: {len(hyps)} outputs for {len(refs)} references")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(refs), size=(n_samples, len(refs)))
    out = []
    for metric_name, metric in metrics_for(lang).items():
        if metric_name not in metrics:
            continue
        samples: dict[str, np.ndarray] = {}
        full: dict[str, float] = {}
        for name, hyps in outputs.items():
            stats = np.asarray(metric._extract_corpus_statistics([h or "" for h in hyps], [list(refs)]))
            full[name] = float(metric._compute_score_from_stats(list(stats.sum(0))).score)
            sums = stats[idx].sum(axis=1)  # (n_samples, n_stats)
            samples[name] = np.array([metric._compute_score_from_stats(list(s)).score for s in sums])
        for name in [baseline, *sorted(k for k in outputs if k != baseline)]:
            lo, hi = np.percentile(samples[name], [2.5, 97.5])
            p: float | None = None
            if name != baseline:
                delta = samples[name] - samples[baseline]
                le = (np.count_nonzero(delta <= 0) + 1) / (n_samples + 1)
                ge = (np.count_nonzero(delta >= 0) + 1) / (n_samples + 1)
                p = min(1.0, 2 * min(le, ge))
            out.append(PairedResult(name, metric_name, full[name], float(lo), float(hi), p))
    return out


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    if not values:
        raise ValueError("no values")
    m = sum(values) / len(values)
    if len(values) == 1:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
