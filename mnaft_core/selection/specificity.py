"""Does the selection select what it claims? A permutation test of language specificity, and the overlap
of the neurons read from image instructions with those read from text instructions.

**The null.** A neuron is language-specific if its LAPE entropy is lower than it would be were language
unrelated to its firing. The profile stores no per-token or per-sample activation *counts* (only each
shard's per-group totals, and optionally per-sample mean activations, which are not the statistic LAPE
uses), so the exchangeable unit is the finest one stored: a *slice*, the shards that profiled the same
samples of one direction (one shard per modality). Under the null the slices are exchangeable, so the
test permutes the direction labels of the slices (a slice keeps its image and text shards together, and
every direction keeps its number of slices, hence each language its number of samples) and recomputes
each neuron's entropy from the permuted per-language totals. A per-token permutation (computable from
the totals as a multivariate hypergeometric) would be invalid: tokens of one sample are not independent,
so its null is far too narrow (docs/specificity.md).

The p-value of a neuron is ``(1 + #{null entropy <= observed}) / (1 + permutations)`` (one-sided: more
specific than chance). Benjamini-Hochberg then runs over *every* neuron that fires at all, never over
the selected ones only: LAPE chose those by the very statistic under test, and BH's guarantee holds for
a family fixed before looking. (Dropping never-firing neurons keeps the FDR: whether a neuron fires is
the same under every permutation.) The resolution is the number of distinct arrangements of the slice
labels: with one slice per direction (a shard holding all of a direction's samples) no neuron can reach
p < 0.05; profile with a smaller ``shard_size`` for a decisive test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import zarr
from numpy.typing import NDArray
from pydantic import Field

from mnaft_core._base import StrictModel
from mnaft_core.profiling.stats import GROUPS, STATS
from mnaft_core.profiling.zarr_stats import Condition, condition_totals, pending_shards
from mnaft_core.selection.aggregate import per_language
from mnaft_core.selection.lape import LapeConfig, select_lape

_RESPONSE = GROUPS.index("response")
_CHUNK_BYTES = 32 * 2**20  # per float64 temporary of the null computation
_KEPT_DRAWS = 1000  # screening permutations (minus one) = null entropies kept per neuron for the picture


class SpecificityConfig(StrictModel):
    """The permutation test of the language-specific class."""

    permutations: int = Field(
        9999,
        ge=99,
        le=1_000_000,
        description="label permutations per neuron; the smallest p-value is 1 / (permutations + 1), and "
        "Benjamini-Hochberg over thousands of neurons needs it far below the FDR",
    )
    fdr: float = Field(
        0.05, gt=0.0, lt=1.0, description="false discovery rate of the Benjamini-Hochberg step"
    )


@dataclass(frozen=True)
class SliceCounts:
    """One module's activation counts per slice, split by whose language the tokens carry."""

    languages: tuple[str, ...]
    directions: tuple[tuple[str, str], ...]  # (src, tgt) per direction index
    labels: NDArray[np.int64]  # (U,) direction of each slice
    active_src: NDArray[np.float64]  # (U, L*N) active-token counts at source-language positions
    active_tgt: NDArray[np.float64]  # (U, L*N) ... at target-language positions (the LM's response)
    tokens_src: NDArray[np.float64]  # (U,)
    tokens_tgt: NDArray[np.float64]  # (U,)
    shape: tuple[int, int]  # (layers, neurons)

    def onehots(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(D, K) source- and target-language indicator of each direction."""
        k_of = {lang: k for k, lang in enumerate(self.languages)}
        src = np.zeros((len(self.directions), len(self.languages)))
        tgt = np.zeros_like(src)
        for d, (s, t) in enumerate(self.directions):
            src[d, k_of[s]] = 1.0
            tgt[d, k_of[t]] = 1.0
        return src, tgt


def slice_counts(root: zarr.Group, module: str) -> SliceCounts:
    """Read one module's per-shard active counts and fold them into slices (see the module docstring)."""
    if pending := pending_shards(root):
        raise ValueError(
            f"profile has {len(pending)} unfinished shards (first: {pending[:5]}); resume it first"
        )
    attrs: dict[str, Any] = dict(root.attrs)
    conditions = [Condition(c["src"], c["tgt"], c["modality"]) for c in attrs["conditions"]]
    languages = tuple(sorted({c.src for c in conditions} | {c.tgt for c in conditions}))
    directions = tuple(sorted({(c.src, c.tgt) for c in conditions}))
    try:
        grp: Any = root[module]
        cond = np.asarray(grp["condition"][:])
        tokens = np.asarray(grp["tokens"][:])  # (S, G)
        stats = grp["stats"]
        active = np.asarray(stats[:, STATS.index("active")])  # (S, G, L, N)
    except KeyError as err:
        raise KeyError(f"{root.store_path}: profile has no {module!r} statistics ({err})") from err
    n_shards, _, n_layers, n_neurons = active.shape
    # the k-th shard of each condition of a direction covers the same samples (the profiler's plan)
    slice_of: dict[tuple[int, int], int] = {}
    rank: dict[int, int] = {}
    labels: list[int] = []
    shard_slice = np.empty(n_shards, dtype=np.int64)
    for s, c in enumerate(cond.tolist()):
        cd = conditions[c]
        d = directions.index((cd.src, cd.tgt))
        r = rank[c] = rank.get(c, -1) + 1
        if (d, r) not in slice_of:
            slice_of[d, r] = len(labels)
            labels.append(d)
        shard_slice[s] = slice_of[d, r]
    n_units = len(labels)
    tgt_groups = [_RESPONSE] if module == "language" else []
    src_groups = [g for g in range(len(GROUPS)) if g not in tgt_groups]
    flat = active.reshape(n_shards, len(GROUPS), n_layers * n_neurons)
    a_src, a_tgt = np.zeros((n_units, n_layers * n_neurons)), np.zeros((n_units, n_layers * n_neurons))
    t_src, t_tgt = np.zeros(n_units), np.zeros(n_units)
    np.add.at(a_src, shard_slice, flat[:, src_groups].sum(axis=1))
    np.add.at(t_src, shard_slice, tokens[:, src_groups].sum(axis=1))
    if tgt_groups:
        np.add.at(a_tgt, shard_slice, flat[:, tgt_groups].sum(axis=1))
        np.add.at(t_tgt, shard_slice, tokens[:, tgt_groups].sum(axis=1))
    return SliceCounts(
        languages, directions, np.asarray(labels), a_src, a_tgt, t_src, t_tgt, (n_layers, n_neurons)
    )


def benjamini_hochberg(p: NDArray[np.float64]) -> NDArray[np.float64]:
    """BH-adjusted p-values (q-values): ``q <= alpha`` is the BH discovery set at FDR ``alpha``."""
    p = np.asarray(p, dtype=np.float64)
    if p.size == 0:
        return p.copy()
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p, kind="stable")
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out


def _entropies(
    labels: NDArray[np.int64],
    counts: SliceCounts,
    cols: NDArray[np.int64],
    onehot: tuple[NDArray[Any], NDArray[Any]],
) -> NDArray[np.float64]:
    """LAPE entropy of the neurons ``cols`` under each row of slice labels ``labels`` (B, U) -> (B, n)."""
    n_perm, n_units = labels.shape
    k = len(counts.languages)
    # (B*K, U) indicator rows: one matrix product each for all permutations (a batched one is slower)
    src = onehot[0][labels].transpose(0, 2, 1).reshape(n_perm * k, n_units)
    tgt = onehot[1][labels].transpose(0, 2, 1).reshape(n_perm * k, n_units)
    act = src @ counts.active_src[:, cols]
    if counts.tokens_tgt.any():
        act += tgt @ counts.active_tgt[:, cols]
    act = act.reshape(n_perm, k, -1)  # (B, K, n)
    tok = (src @ counts.tokens_src + tgt @ counts.tokens_tgt).reshape(n_perm, k)
    with np.errstate(divide="ignore"):
        act *= np.where(tok > 0, 1.0 / tok, 0.0)[..., None]  # activation probability; 0 without tokens
    # lape_entropy's formula, in place on (B, K, n): at this size its temporaries cost more than the math
    total = act.sum(axis=1, keepdims=True)
    np.divide(act, total, out=act, where=total > 0)
    logp = np.log(act, out=np.zeros_like(act), where=act > 0)
    ent = -np.einsum("bkn,bkn->bn", act, logp)
    return np.where(total[:, 0] > 0, ent, np.inf)


@dataclass(frozen=True)
class ModuleTest:
    entropy: NDArray[np.float64]  # (L*N,) observed
    p_value: NDArray[np.float64]  # (L*N,); 1 where the neuron never fires
    null_mean: NDArray[np.float64]  # (L*N,) mean finite null entropy (of the screening permutations)
    null_sd: NDArray[np.float64]  # (L*N,) standard deviation of the null entropy (likewise)
    kept: NDArray[np.float64]  # (draws, n_keep) null entropies of the ``keep`` neurons
    arrangements_log10: float  # distinct slice labellings (an upper bound on distinct null values)
    refined: int  # neurons whose p-value used every permutation


def _scan(
    counts: SliceCounts,
    perms: NDArray[np.int64],
    cols: NDArray[np.int64],
    onehot: tuple[NDArray[Any], NDArray[Any]],
    keep: NDArray[np.int64],
) -> tuple[NDArray[np.float64], ...]:
    """Observed entropy, p-value, null mean, null standard deviation of ``cols``; the draws of ``keep``."""
    n_perm = perms.shape[0]
    per_chunk = max(1, _CHUNK_BYTES // (8 * n_perm * len(counts.languages)))
    obs_all, p, mean, sd = (np.empty(cols.size) for _ in range(4))
    kept = np.empty((min(n_perm, _KEPT_DRAWS), keep.size))
    for start in range(0, cols.size, per_chunk):
        part = slice(start, min(start + per_chunk, cols.size))
        obs = _entropies(counts.labels[None], counts, cols[part], onehot)[0]
        null = _entropies(perms, counts, cols[part], onehot)  # (B, n)
        obs_all[part] = obs
        # ties count against the neuron (tolerance for the float sums' order); inf <= inf: p = 1
        hits = (null <= obs + 1e-12 * np.maximum(1.0, np.abs(np.nan_to_num(obs, posinf=0.0)))).sum(0)
        p[part] = (1 + hits) / (1 + n_perm)
        # whether a neuron fires is the same under every labelling: a column is all finite or all inf
        fires = np.isfinite(obs)
        safe = np.where(fires, null, 0.0)
        mean[part] = np.where(fires, safe.mean(axis=0), np.nan)
        sd[part] = np.where(fires, safe.std(axis=0), np.nan)
        where = np.flatnonzero(np.isin(keep, cols[part]))
        if where.size:
            kept[:, where] = null[: kept.shape[0], np.searchsorted(cols[part], keep[where])]
    return obs_all, p, mean, sd, kept


def permutation_test(
    counts: SliceCounts,
    permutations: int,
    rng: np.random.Generator,
    keep: NDArray[np.bool_] | None = None,
    refine_below: float = 1.0,
) -> ModuleTest:
    """Per-neuron p-values of "lower entropy than under permuted slice labels" (see the module docstring).

    Every neuron is screened with the first ``min(permutations, 999)`` permutations; only those whose
    screening p-value is at most ``refine_below`` get all of them. That p-value is still valid (for
    ``a < refine_below`` a neuron reaches ``p <= a`` only through the full test; above, the two add up to
    the screening test's chance) and with ``refine_below`` = the FDR, BH's discoveries are unchanged, as
    BH never rejects a p-value above the FDR. The screen is what makes a 2B model's ~4*10^5 neurons cheap.
    """
    n_units, width = counts.active_src.shape
    onehot = counts.onehots()
    perms = rng.permuted(np.broadcast_to(counts.labels, (permutations, n_units)).copy(), axis=1)
    keep_idx = np.flatnonzero(keep) if keep is not None else np.zeros(0, dtype=np.int64)
    screen = min(permutations, _KEPT_DRAWS - 1)
    observed, p_value, null_mean, null_sd, kept = _scan(
        counts, perms[:screen], np.arange(width), onehot, keep_idx
    )
    again = np.flatnonzero(p_value <= refine_below) if screen < permutations else np.zeros(0, np.int64)
    if again.size:
        p_value[again] = _scan(counts, perms, again, onehot, np.zeros(0, dtype=np.int64))[1]
    # labellings that can differ: by source language alone where no token carries the target's
    src_k, tgt_k = onehot[0].argmax(1)[counts.labels], onehot[1].argmax(1)[counts.labels]
    effective = np.stack([src_k, tgt_k if counts.tokens_tgt.any() else np.zeros_like(tgt_k)], axis=1)
    _, per_label = np.unique(effective, axis=0, return_counts=True)
    arrangements = (math.lgamma(n_units + 1) - sum(math.lgamma(c + 1) for c in per_label)) / math.log(10)
    return ModuleTest(observed, p_value, null_mean, null_sd, kept, arrangements, int(again.size))


@dataclass(frozen=True)
class SpecificityResult:
    table: pl.DataFrame  # one row per neuron of every tested module
    null: dict[str, NDArray[np.float64]]  # module -> (draws, selected) null entropies, for the picture
    metrics: dict[str, Any]


def measure_specificity(
    root: zarr.Group, neurons: pl.DataFrame, layers: pl.DataFrame, cfg: SpecificityConfig, seed: int = 0
) -> SpecificityResult:
    """Test every neuron of the modules in ``neurons``; BH over all that fire; report on the selected.

    *Selected* = LAPE's language-specific neurons in the selected layers: the class mnaft trains per
    language (whatever ``method`` the mask was made with).
    """
    frames, null, per_module = [], {}, {}
    chosen = layers.filter(pl.col("selected")).select("module", "layer")
    for m, module in enumerate(neurons["module"].unique(maintain_order=True).to_list()):
        sub = neurons.filter(pl.col("module") == module).sort("layer", "neuron")
        counts = slice_counts(root, module)
        n_layers, n_neurons = counts.shape
        if sub.height != n_layers * n_neurons:
            raise ValueError(f"{module}: {sub.height} neuron rows for a profile of {n_layers} x {n_neurons}")
        in_layer = np.isin(sub["layer"].to_numpy(), chosen.filter(pl.col("module") == module)["layer"])
        selected = sub["lape_specific"].to_numpy() & in_layer
        rng = np.random.default_rng([seed, m])
        res = permutation_test(counts, cfg.permutations, rng, selected, refine_below=cfg.fdr)
        if not np.allclose(res.entropy, sub["entropy"].to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True):
            raise ValueError(f"{module}: slice totals do not reproduce the profile's entropies")
        frames.append(
            sub.select("module", "layer", "neuron", "entropy", "languages", "lape_specific").with_columns(
                pl.Series("selected", selected),
                pl.Series("fires", np.isfinite(res.entropy)),
                pl.Series("null_mean", res.null_mean),
                pl.Series("null_sd", res.null_sd),
                pl.Series("p_value", res.p_value),
            )
        )
        null[module] = res.kept
        per_module[module] = {
            "languages": list(counts.languages),
            "slices": int(counts.labels.size),
            "arrangements_log10": round(res.arrangements_log10, 3),
            "min_p": max(1.0 / (cfg.permutations + 1), 10.0 ** (-res.arrangements_log10)),
            "refined": res.refined,
        }
    table = pl.concat(frames, how="vertical")
    fires = table["fires"].to_numpy()
    q = np.ones(table.height)
    q[fires] = benjamini_hochberg(table["p_value"].to_numpy()[fires])
    table = table.with_columns(pl.Series("q_value", q), pl.Series("significant", q <= cfg.fdr))
    return SpecificityResult(table, null, _metrics(table, per_module, cfg))


def _counts(rows: pl.DataFrame) -> dict[str, Any]:
    """Selected, significant, their share, and the effect: observed entropies vs their nulls' means."""
    n, sig = rows.height, int(rows["significant"].sum())
    ent, null = rows["entropy"].to_numpy(), rows["null_mean"].to_numpy()
    return {
        "selected": n,
        "significant": sig,
        "share_significant": sig / n if n else None,
        "entropy_min": float(ent.min()) if n else None,
        "entropy_max": float(ent.max()) if n else None,
        "null_mean_entropy": float(np.nanmean(null)) if n and np.isfinite(null).any() else None,
    }


def _metrics(
    table: pl.DataFrame, per_module: dict[str, dict[str, Any]], cfg: SpecificityConfig
) -> dict[str, Any]:
    sel = table.filter(pl.col("selected"))
    n_lang = max((len(info["languages"]) for info in per_module.values()), default=0)
    out: dict[str, Any] = {
        "null": "direction labels permuted over sample slices (same slices per direction); BH over all "
        "firing neurons",
        "permutations": cfg.permutations,
        "fdr": cfg.fdr,
        "tested": int(table["fires"].sum()),
        "discoveries": int(table["significant"].sum()),
        **_counts(sel),
        "max_entropy": math.log(n_lang) if n_lang else None,
        "modules": {},
    }
    for module, info in per_module.items():
        mod = table.filter(pl.col("module") == module)
        msel = mod.filter(pl.col("selected"))
        tested = int(mod["fires"].sum())
        langs = sorted({lang for row in msel["languages"].to_list() for lang in row})
        # how many neurons at the smallest p BH needs before it calls any of them a discovery
        needed = math.ceil(info["min_p"] * max(out["tested"], 1) / cfg.fdr)
        out["modules"][module] = {
            **info,
            "tested": tested,
            "discoveries": int(mod["significant"].sum()),
            "min_discoveries_possible": needed,
            **_counts(msel),
            "per_language": {
                lang: _counts(msel.filter(pl.col("languages").list.contains(lang))) for lang in langs
            },
        }
    return out


# ---- image-instruction vs text-instruction neurons ----------------------------------------------------


def modality_overlap(root: zarr.Group, modules: Sequence[str], lape: LapeConfig) -> pl.DataFrame:
    """LAPE run on the image-instruction and on the text-instruction conditions alone; per module, layer
    and class: both sets, their intersection, Jaccard, and Jaccard expected of independent random sets of
    the same sizes. A module that saw only one modality (the vision tower) has no rows."""
    attrs: dict[str, Any] = dict(root.attrs)
    conditions = [Condition(c["src"], c["tgt"], c["modality"]) for c in attrs["conditions"]]
    languages = sorted({c.src for c in conditions} | {c.tgt for c in conditions})
    rows: list[dict[str, Any]] = []
    for module in modules:
        totals = condition_totals(root, module)
        sets: dict[str, Any] = {}
        for modality in ("image", "text"):
            part = {c: st for c, st in totals.items() if conditions[c].modality == modality}
            if not part or not any(st.tokens.sum() > 0 for st in part.values()):
                break
            stats = per_language(module, part, conditions, languages)
            sets[modality] = select_lape(stats.prob, lape)
        if len(sets) < 2:
            continue
        img, txt = sets["image"], sets["text"]
        for cls in ("specific", "agnostic"):
            a, b = getattr(img, cls), getattr(txt, cls)  # (L, N)
            for layer in range(a.shape[0]):
                rows.append(_overlap_row(module, layer, cls, a[layer], b[layer]))
    schema = {
        "module": pl.String,
        "layer": pl.Int32,
        "class": pl.String,
        "neurons": pl.Int64,
        "image": pl.Int64,
        "text": pl.Int64,
        "both": pl.Int64,
        "jaccard": pl.Float64,
        "chance_jaccard": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def jaccard(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """|a & b| / |a | b|; NaN when both are empty."""
    union = int((a | b).sum())
    return float((a & b).sum()) / union if union else math.nan


def _overlap_row(
    module: str, layer: int, cls: str, a: NDArray[np.bool_], b: NDArray[np.bool_]
) -> dict[str, Any]:
    na, nb, n = int(a.sum()), int(b.sum()), a.size
    both = na * nb / n  # expected intersection of independent random sets of these sizes
    chance = both / (na + nb - both) if na + nb else math.nan
    return {
        "module": module,
        "layer": layer,
        "class": cls,
        "neurons": n,
        "image": na,
        "text": nb,
        "both": int((a & b).sum()),
        "jaccard": jaccard(a, b),
        "chance_jaccard": chance,
    }


def overlap_metrics(overlap: pl.DataFrame) -> dict[str, Any]:
    """Per module and class, over all layers: the two set sizes, the intersection, Jaccard and chance."""
    out: dict[str, Any] = {}
    for (module, cls), g in overlap.group_by("module", "class", maintain_order=True):
        na, nb, both = int(g["image"].sum()), int(g["text"].sum()), int(g["both"].sum())
        union = na + nb - both
        exp = float((g["image"] * g["text"] / g["neurons"]).sum())  # expected chance intersection
        out.setdefault(str(module), {})[str(cls)] = {
            "image": na,
            "text": nb,
            "both": both,
            "jaccard": both / union if union else None,
            "chance_jaccard": exp / (na + nb - exp) if na + nb else None,
        }
    return out


def specificity_markdown(metrics: Mapping[str, Any] | None, overlap: Mapping[str, Any] | None) -> str:
    """The select stage's Markdown section: the share of selected neurons that beat the null, and more."""
    if not metrics:
        return ""
    lines = [
        "## Language specificity (permutation test)",
        "",
        f"Null: {metrics['null']}; {metrics['permutations']} permutations, FDR {metrics['fdr']}.",
        "",
        "| module | slices | min p | selected | entropy range | null mean | significant | share "
        "| discoveries |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]

    def rng_(d: Mapping[str, Any]) -> str:
        return "" if d["entropy_min"] is None else f"{d['entropy_min']:.4f}-{d['entropy_max']:.4f}"

    def share(d: Mapping[str, Any]) -> str:
        return "" if d["share_significant"] is None else f"{100 * d['share_significant']:.1f}%"

    def null(d: Mapping[str, Any]) -> str:
        return "" if d["null_mean_entropy"] is None else f"{d['null_mean_entropy']:.4f}"

    for module, d in metrics["modules"].items():
        lines.append(
            f"| {module} | {d['slices']} | {d['min_p']:.2g} | {d['selected']} | {rng_(d)} | {null(d)} | "
            f"{d['significant']} | {share(d)} | {d['discoveries']} of {d['tested']} |"
        )
    lines.append(
        f"| all | | | {metrics['selected']} | {rng_(metrics)} | {null(metrics)} | {metrics['significant']} "
        f"| {share(metrics)} "
        f"| {metrics['discoveries']} of {metrics['tested']} |"
    )
    if metrics.get("max_entropy"):
        lines += [
            "",
            f"Maximum entropy ln K = {metrics['max_entropy']:.4f}. *Selected*: LAPE's language-specific "
            "neurons in the selected layers; *discoveries*: all neurons significant at the FDR.",
        ]
    per_lang = [
        f"{module}/{lang}: {d['significant']} of {d['selected']}"
        for module, md in metrics["modules"].items()
        for lang, d in md["per_language"].items()
    ]
    if per_lang:
        lines += ["", "Per language (significant of selected): " + ", ".join(per_lang) + "."]
    if any(d["min_discoveries_possible"] > max(d["selected"], 1) for d in metrics["modules"].values()):
        lines += [
            "",
            "**Too little resolution**: at the smallest attainable p, Benjamini-Hochberg needs more "
            "discoveries than were selected; profile with a smaller `shard_size` (more slices) or raise "
            "`select.specificity.permutations`.",
        ]
    if overlap:
        lines += [
            "",
            "## Image- vs text-instruction neurons",
            "",
            "| module | class | image | text | both | Jaccard | chance |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for module, by_cls in overlap.items():
            for cls, d in by_cls.items():
                jac = "" if d["jaccard"] is None else f"{d['jaccard']:.3f}"
                ch = "" if d["chance_jaccard"] is None else f"{d['chance_jaccard']:.3f}"
                lines.append(
                    f"| {module} | {cls} | {d['image']} | {d['text']} | {d['both']} | {jac} | {ch} |"
                )
    return "\n".join(lines) + "\n"
