"""The claim's statistics (docs/claim.md, "Metric and test"), pure: outputs in, comparisons and a
decision out.

- **Effect** of A vs B: mean over directions and seeds of chrF++(A) - chrF++(B), corpus chrF++ per
  direction and seed.
- **Two-level paired bootstrap**: each resample draws the seeds with replacement (seed k of A stays paired
  with seed k of B; a system without seeds, such as the base model, is the same output for every seed)
  and, within each direction, the test strings with replacement (the same string indices for every
  system and seed); chrF++ is recomputed from summed sufficient statistics (sacrebleu's per-string
  n-gram counts), so a resample costs a matrix product, not a re-tokenisation.
- **p**: two-sided and tie-aware, as in ``significance.py``: ``min(1, 2 * min(P(d* <= 0), P(d* >= 0)))``
  with (count + 1) / (n + 1) smoothing; the 95% interval is the percentile interval of ``d*``.
- **Holm** across the family (baseline vs each other system); **MDD** at 80% power =
  ``(z(1 - alpha / (2 m)) + z(power)) * SE``, ``SE`` the bootstrap standard deviation of ``d*``.
- **Retention** (reading CER, text chrF++) per system against the base, with intervals from the same
  resamples (secondary: not in the Holm family).
- **Decision** as fixed in docs/claim.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray
from rapidfuzz.distance import Levenshtein

from mnaft_core.evaluation.metrics import make_chrf

ALPHA, POWER = 0.05, 0.80
MIN_EFFECT = 1.0  # chrF++: both intervals below this -> contradicted
TEXT_MARGIN, CER_MARGIN = 2.0, 0.02  # retention cost of "supported"

Array = NDArray[np.float64]


def chrf_statistics(hyps: Sequence[str], refs: Sequence[str]) -> Array:
    """Per-string chrF++ sufficient statistics (strings, 3 x orders): hyp, ref, match counts per order."""
    metric = make_chrf()
    stats = metric._extract_corpus_statistics([h or "" for h in hyps], [list(refs)])
    return np.asarray(stats, dtype=np.float64).reshape(len(hyps), -1)


def chrf_from_statistics(stats: Array, beta: float = 2.0) -> Array:
    """sacrebleu's chrF (effective-order averaging, no eps smoothing) from summed statistics (..., 3k)."""
    hyp, ref, match = stats[..., 0::3], stats[..., 1::3], stats[..., 2::3]
    valid = (hyp > 0) & (ref > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(valid, match / np.where(hyp > 0, hyp, 1), 0.0)
        rec = np.where(valid, match / np.where(ref > 0, ref, 1), 0.0)
    eff = valid.sum(-1)
    ap = np.where(eff > 0, prec.sum(-1) / np.maximum(eff, 1), 0.0)
    ar = np.where(eff > 0, rec.sum(-1) / np.maximum(eff, 1), 0.0)
    f = beta**2
    denom = f * ap + ar
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(ap + ar > 0, 100 * (1 + f) * ap * ar / np.where(denom > 0, denom, 1), 0.0)
    return np.asarray(score, dtype=np.float64)


def cer_statistics(hyps: Sequence[str], refs: Sequence[str]) -> Array:
    """Per-string (edits, reference characters) of CER, as ``metrics.error_rate`` counts them."""
    out = np.zeros((len(hyps), 2))
    for i, (h, r) in enumerate(zip(hyps, refs, strict=True)):
        rt = list(r.strip())
        out[i] = (Levenshtein.distance(list((h or "").strip()), rt), len(rt))
    return out


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def mdd_factor(comparisons: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """``z(1 - alpha / (2 m)) + z(power)``: the MDD in bootstrap standard errors (3.71 for m = 12)."""
    z = NormalDist().inv_cdf
    return z(1 - alpha / (2 * comparisons)) + z(power)


def two_sided_p(deltas: Array) -> float:
    """Tie-aware two-sided bootstrap p of "no difference" (``significance.py``'s convention)."""
    n = deltas.size
    le = (np.count_nonzero(deltas <= 0) + 1) / (n + 1)
    ge = (np.count_nonzero(deltas >= 0) + 1) / (n + 1)
    return float(min(1.0, 2 * min(le, ge)))


@dataclass(frozen=True)
class Measures:
    """Per-string statistics of one system, aligned across systems: per direction (sorted), an array
    (seeds of the system, strings, stats). ``seeds`` = () for a system without seeds."""

    seeds: tuple[int, ...]
    stats: tuple[Array, ...]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    se: float


@dataclass(frozen=True)
class Comparison:
    system: str  # the baseline vs this system
    delta: float  # baseline minus system, chrF++
    ci_low: float
    ci_high: float
    se: float
    p: float
    p_holm: float
    mdd: float

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


@dataclass
class ClaimResult:
    baseline: str
    seeds: list[int]
    directions: list[str]
    strings: dict[str, int]  # direction -> test strings
    resamples: int
    scores: list[dict[str, Any]]  # per system: mean chrF++ over directions and seeds, sd over seeds, ...
    comparisons: list[Comparison]
    retention: list[dict[str, Any]]
    decision: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparisons"] = [{**asdict(c), "significant": c.significant} for c in self.comparisons]
        return out


def _aligned(
    df: pl.DataFrame, directions: Sequence[str], ids: Mapping[str, list[str]], what: str
) -> dict[tuple[int, str], pl.DataFrame]:
    out = {}
    for (seed, direction), part in df.group_by(["seed", "direction"], maintain_order=True):
        part = part.sort("sample_id")
        if part["sample_id"].to_list() != ids[str(direction)]:
            raise ValueError(f"{what} seed {seed} {direction}: not run on the same test strings")
        out[(int(str(seed)), str(direction))] = part
    for d in directions:
        if not any(k[1] == d for k in out):
            raise ValueError(f"{what}: no outputs for direction {d}")
    return out


def measures(
    df: pl.DataFrame,
    column: str,
    kind: str,
    directions: Sequence[str],
    ids: Mapping[str, list[str]],
    what: str,
) -> Measures:
    """One system's per-string statistics of ``column`` (chrF++ against ``reference``, or CER against
    ``source``), seed by seed, direction by direction."""
    parts = _aligned(df, directions, ids, what)
    seeds = tuple(sorted({k[0] for k in parts}))
    stats = []
    for d in directions:
        per_seed = []
        for s in seeds:
            if (s, d) not in parts:
                raise ValueError(f"{what}: seed {s} has no outputs for {d}")
            p = parts[(s, d)]
            hyps = p[column].fill_null("").to_list()
            if kind == "chrf":
                per_seed.append(chrf_statistics(hyps, p["reference"].to_list()))
            else:
                per_seed.append(cer_statistics(hyps, p["source"].to_list()))
        stats.append(np.stack(per_seed))
    return Measures(seeds, tuple(stats))


class Bootstrap:
    """Shared two-level resamples: seed draws (R, K) and per-direction string counts (R, n_d)."""

    def __init__(self, seeds: Sequence[int], strings: Sequence[int], resamples: int, seed: int):
        rng = np.random.default_rng(seed)
        self.seeds = list(seeds)
        self.resamples = resamples
        self.seed_draws = rng.integers(0, len(seeds), size=(resamples, len(seeds)))
        self.weights = [
            rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64) for n in strings
        ]

    def _per_seed(self, m: Measures, what: str, seeded: bool) -> list[int]:
        """Index into ``m``'s seeds of each experiment seed (a seedless system: its one output for all)."""
        if not seeded:
            if len(m.seeds) != 1:
                raise ValueError(f"{what}: a system without seeds has outputs for seeds {list(m.seeds)}")
            return [0] * len(self.seeds)  # one output for every seed (base, cascades)
        if list(m.seeds) != self.seeds:
            raise ValueError(f"{what}: seeds {list(m.seeds)}, the experiment's are {self.seeds}")
        return list(range(len(self.seeds)))

    def chrf(self, m: Measures, what: str, seeded: bool) -> tuple[float, Array, Array]:
        """Mean chrF++ over directions and seeds: full-data value, per-resample values (R,), and the
        per-seed full-data means over directions (K,)."""
        idx = self._per_seed(m, what, seeded)
        full = np.stack([chrf_from_statistics(st.sum(1)) for st in m.stats], -1)  # (K_sys, D)
        boot = np.stack(
            [
                chrf_from_statistics(np.einsum("rn,kns->rks", w, st))
                for w, st in zip(self.weights, m.stats, strict=True)
            ],
            -1,
        )  # (R, K_sys, D)
        per_seed = full[idx].mean(-1)  # (K,)
        drawn = np.asarray(idx)[self.seed_draws]  # (R, K) rows of the system's seeds
        values = boot[np.arange(self.resamples)[:, None], drawn].mean(axis=(1, 2))
        return float(per_seed.mean()), values, per_seed

    def cer(self, m: Measures, what: str, seeded: bool) -> tuple[float, Array]:
        """Reading CER pooled over the directions' strings, averaged over seeds: value, resamples."""
        idx = self._per_seed(m, what, seeded)
        edits = sum(st[..., 0].sum(1) for st in m.stats)  # (K_sys,)
        chars = sum(st[..., 1].sum(1) for st in m.stats)
        full = (edits / chars)[idx]
        b_edits = sum(
            np.einsum("rn,kn->rk", w, st[..., 0]) for w, st in zip(self.weights, m.stats, strict=True)
        )
        b_chars = sum(
            np.einsum("rn,kn->rk", w, st[..., 1]) for w, st in zip(self.weights, m.stats, strict=True)
        )
        boot = b_edits / np.maximum(b_chars, 1)  # (R, K_sys)
        drawn = np.asarray(idx)[self.seed_draws]
        values = boot[np.arange(self.resamples)[:, None], drawn].mean(1)
        return float(full.mean()), values


def interval(estimate: float, boot: Array) -> Interval:
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Interval(estimate, float(lo), float(hi), float(boot.std(ddof=1)))


def compare(
    baseline: str, values: Mapping[str, tuple[float, Array]], others: Sequence[str]
) -> list[Comparison]:
    """The baseline against each of ``others``: delta, interval, raw and Holm p, MDD."""
    base_est, base_boot = values[baseline]
    raw = []
    for name in others:
        est, boot = values[name]
        d = base_boot - boot
        raw.append((name, base_est - est, d))
    ps = [two_sided_p(d) for _, _, d in raw]
    adjusted = holm(ps)
    factor = mdd_factor(len(raw))
    out = []
    for (name, delta, d), p, ph in zip(raw, ps, adjusted, strict=True):
        iv = interval(delta, d)
        out.append(Comparison(name, delta, iv.low, iv.high, iv.se, p, ph, factor * iv.se))
    return out


def decide(
    comparisons: Sequence[Comparison], against: Sequence[str], retention: Mapping[str, Any] | None
) -> dict[str, Any]:
    """docs/claim.md's decision rule on the comparisons with ``against`` (random and full).

    The rule lists "supported" and "contradicted" without an order; where both hold (the baseline wins
    significantly by less than 1 chrF++ against both) the outcome is "supported and contradicted", with
    both reasons, rather than one picked after the fact.
    """
    by = {c.system: c for c in comparisons}
    missing = [a for a in against if a not in by]
    if missing:
        raise ValueError(f"the decision needs the comparisons with {missing}")
    chosen = [by[a] for a in against]
    wins = [c.significant and c.delta > 0 for c in chosen]
    losses = [c.system for c in chosen if c.significant and c.delta < 0]
    small = all(c.ci_high < MIN_EFFECT for c in chosen)
    supported = all(wins)
    reasons = []
    if supported:
        reasons.append(f"beats {' and '.join(against)} (Holm p < {ALPHA}, delta > 0)")
    if losses:
        reasons.append(f"{' and '.join(losses)} beat(s) the baseline (Holm p < {ALPHA}, delta < 0)")
    if small:
        reasons.append(
            f"the 95% intervals against {' and '.join(against)} all lie below +{MIN_EFFECT} chrF++"
        )
    contradicted = bool(losses) or small
    outcome = (
        "supported and contradicted"
        if supported and contradicted
        else "supported"
        if supported
        else "contradicted"
        if contradicted
        else "inconclusive"
    )
    cost = []
    if supported and retention is not None:
        if retention["text_chrf_delta_high"] < -TEXT_MARGIN:
            cost.append(f"text chrF++ below the base by more than {TEXT_MARGIN}")
        if retention["reading_cer_delta_low"] > CER_MARGIN:
            cost.append(f"reading CER above the base by more than {CER_MARGIN}")
        if cost and outcome == "supported":
            outcome = "supported at a retention cost"
    if outcome == "inconclusive":
        reasons.append("neither condition holds: see the intervals and MDDs")
    return {"outcome": outcome, "reasons": reasons, "retention_cost": cost, "against": list(against)}


def claim_statistics(
    outputs: pl.DataFrame,
    retained: pl.DataFrame | None,
    systems: Sequence[str],
    baseline: str,
    seeds: Sequence[int],
    against: Sequence[str],
    resamples: int,
    seed: int,
    seedless: Sequence[str] = ("base",),
    base: str = "base",
) -> ClaimResult:
    """Scores, comparisons (``baseline`` vs every other system, one Holm family), retention and the
    decision from the evaluate stage's ``outputs.parquet`` and ``retention_outputs.parquet``.

    ``systems`` are the outputs' system names in report order; ``seedless`` those with one output for
    every seed (the base model, the cascades); ``base`` the one retention is measured against."""
    known = set(outputs["system"].unique().to_list())
    if missing := [s for s in systems if s not in known]:
        raise ValueError(f"no outputs for systems {missing}")
    ref = outputs.filter(pl.col("system") == baseline)
    directions = sorted(ref["direction"].unique().to_list())
    first_seed = ref["seed"].min()
    ids = {
        d: ref.filter((pl.col("direction") == d) & (pl.col("seed") == first_seed))
        .sort("sample_id")["sample_id"]
        .to_list()
        for d in directions
    }
    boot = Bootstrap(list(seeds), [len(ids[d]) for d in directions], resamples, seed)
    values: dict[str, tuple[float, Array]] = {}
    scores = []
    for name in systems:
        m = measures(outputs.filter(pl.col("system") == name), "hypothesis", "chrf", directions, ids, name)
        seeded = name not in seedless
        est, b, per_seed = boot.chrf(m, name, seeded)
        values[name] = (est, b)
        full = np.stack([chrf_from_statistics(st.sum(1)) for st in m.stats], -1)
        sd = float(per_seed.std(ddof=1)) if seeded and len(seeds) > 1 else 0.0
        scores.append(
            {
                "system": name,
                "chrf": est,
                "chrf_sd": sd,
                "seeds": len(m.seeds),
                "by_direction": {d: float(full[:, i].mean()) for i, d in enumerate(directions)},
                "ci_low": interval(est, b).low,
                "ci_high": interval(est, b).high,
            }
        )
    comparisons = compare(baseline, values, [s for s in systems if s != baseline])
    retention = (
        _retention(retained, systems, base, directions, ids, boot, seedless) if retained is not None else []
    )
    base_ret = next((r for r in retention if r["system"] == baseline), None)
    decision = decide(comparisons, against, base_ret)
    return ClaimResult(
        baseline,
        list(seeds),
        directions,
        {d: len(ids[d]) for d in directions},
        resamples,
        scores,
        comparisons,
        retention,
        decision,
    )


def _retention(
    retained: pl.DataFrame,
    systems: Sequence[str],
    base: str,
    directions: Sequence[str],
    ids: Mapping[str, list[str]],
    boot: Bootstrap,
    seedless: Sequence[str],
) -> list[dict[str, Any]]:
    have = set(retained["system"].unique().to_list())
    if base not in have:
        raise ValueError(f"retention: no rows of the base system {base!r}")
    vals: dict[str, tuple[tuple[float, Array], tuple[float, Array]]] = {}
    for name in [s for s in systems if s in have]:
        part = retained.filter(pl.col("system") == name)
        text = measures(part, "text_hypothesis", "chrf", directions, ids, f"{name} (text translation)")
        reading = measures(part, "reading", "cer", directions, ids, f"{name} (reading)")
        seeded = name not in seedless
        t_est, t_boot, _ = boot.chrf(text, name, seeded)
        vals[name] = ((t_est, t_boot), boot.cer(reading, name, seeded))
    out = []
    (bt, bt_boot), (bc, bc_boot) = vals[base]
    for name, ((t, t_boot), (c, c_boot)) in vals.items():
        row: dict[str, Any] = {"system": name, "text_chrf": t, "reading_cer": c}
        if name != base:
            dt, dc = interval(t - bt, t_boot - bt_boot), interval(c - bc, c_boot - bc_boot)
            row |= {
                "text_chrf_delta": dt.estimate,
                "text_chrf_delta_low": dt.low,
                "text_chrf_delta_high": dt.high,
                "reading_cer_delta": dc.estimate,
                "reading_cer_delta_low": dc.low,
                "reading_cer_delta_high": dc.high,
            }
        out.append(row)
    return out


def choose_rates(grid: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per system, the rate of the highest mean validation chrF++ (``grid`` rows: system, lr, chrf);
    ties (equal to 1e-9) go to the lower rate."""
    best: dict[str, tuple[float, float]] = {}
    for row in sorted(grid, key=lambda r: (r["system"], r["lr"])):
        s, lr, score = row["system"], float(row["lr"]), float(row["chrf"])
        if s not in best or score > best[s][1] + 1e-9:
            best[s] = (lr, score)
    return {s: lr for s, (lr, _) in best.items()}
