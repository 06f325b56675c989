"""Scores from stored outputs, seed aggregation, significance, and the report (JSON, Markdown, PNG).

Every system's outputs are one Parquet table with the columns in ``OUTPUT_COLUMNS``; all scores are
recomputed from it, so anyone can check them with the sacrebleu command line (``docs/report-format.md``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

from mnaft_core.evaluation.metrics import corpus_scores
from mnaft_core.evaluation.significance import mean_std, paired_bootstrap

OUTPUT_COLUMNS = (
    "sample_id",
    "system",
    "seed",
    "direction",
    "src_lang",
    "tgt_lang",
    "source",
    "reference",
    "hypothesis",
)
REPORT_VERSION = 1


def check_outputs(df: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in OUTPUT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"outputs table lacks columns {missing}")
    dupes = df.group_by(["system", "seed", "sample_id"]).len().filter(pl.col("len") > 1)
    if dupes.height:
        raise ValueError(f"outputs table has {dupes.height} duplicated (system, seed, sample_id) rows")
    return df.with_columns(pl.col("hypothesis").fill_null(""))


def score_outputs(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (system, seed, direction): BLEU, chrF++, TER, segment and empty-hypothesis counts."""
    df = check_outputs(df)
    rows = []
    for (system, seed, direction), part in df.group_by(["system", "seed", "direction"], maintain_order=True):
        part = part.sort("sample_id")
        tgt = part["tgt_lang"][0]
        hyps, refs = part["hypothesis"].to_list(), part["reference"].to_list()
        s = corpus_scores(hyps, refs, tgt)
        rows.append(
            {
                "system": system,
                "seed": seed,
                "direction": direction,
                "tgt_lang": tgt,
                "n": part.height,
                "n_empty": sum(1 for h in hyps if not h.strip()),
                "bleu": s["bleu"].score,
                "chrf": s["chrf"].score,
                "ter": s["ter"].score,
                "bleu_signature": s["bleu"].signature,
                "chrf_signature": s["chrf"].signature,
                "ter_signature": s["ter"].signature,
            }
        )
    return pl.DataFrame(rows)


def aggregate_seeds(scores: pl.DataFrame) -> pl.DataFrame:
    """Mean and standard deviation over seeds per (system, direction)."""
    rows = []
    for (system, direction), part in scores.group_by(["system", "direction"], maintain_order=True):
        row: dict[str, Any] = {"system": system, "direction": direction, "seeds": part.height}
        for m in ("bleu", "chrf", "ter"):
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(part[m].to_list())
        row["n_empty"] = int(part["n_empty"].sum())
        rows.append(row)
    return pl.DataFrame(rows)


def significance(df: pl.DataFrame, baseline: str, n_samples: int = 1000) -> pl.DataFrame:
    """Paired bootstrap of every system against ``baseline`` per direction and seed."""
    df = check_outputs(df)
    rows = []
    for (direction, seed), part in df.group_by(["direction", "seed"], maintain_order=True):
        systems = part["system"].unique(maintain_order=True).to_list()  # stable: equal runs, equal bytes
        if baseline not in systems:
            continue
        ref_part = part.filter(pl.col("system") == baseline).sort("sample_id")
        ids = ref_part["sample_id"].to_list()
        outputs = {}
        for s in systems:
            sp = part.filter(pl.col("system") == s).sort("sample_id")
            if sp["sample_id"].to_list() != ids:
                raise ValueError(f"system {s!r} ({direction}, seed {seed}) was not run on the same samples")
            outputs[s] = sp["hypothesis"].to_list()
        res = paired_bootstrap(
            baseline, outputs, ref_part["reference"].to_list(), ref_part["tgt_lang"][0], n_samples
        )
        for r in res:
            rows.append(
                {
                    "direction": direction,
                    "seed": seed,
                    "system": r.system,
                    "metric": r.metric,
                    "score": r.score,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "p_value": r.p_value,
                }
            )
    return pl.DataFrame(rows)


def _md_table(df: pl.DataFrame, float_fmt: str = "{:.2f}") -> str:
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        cells = [float_fmt.format(v) if isinstance(v, float) else ("" if v is None else str(v)) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(
    out_dir: Path,
    scores: pl.DataFrame,
    sig: pl.DataFrame | None = None,
    retention: pl.DataFrame | None = None,
    cost: pl.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
    title: str = "Image-translation evaluation",
) -> dict[str, Path]:
    """report.json (schema in docs/report-format.md), report.md, scores.png; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    agg = aggregate_seeds(scores)
    signatures = {m: sorted(set(scores[f"{m}_signature"].to_list())) for m in ("bleu", "chrf", "ter")}
    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "title": title,
        "scores": scores.drop([c for c in scores.columns if c.endswith("_signature")]).to_dicts(),
        "aggregate": agg.to_dicts(),
        "signatures": signatures,
        "significance": sig.to_dicts() if sig is not None else [],
        "retention": retention.to_dicts() if retention is not None else [],
        "cost": cost.to_dicts() if cost is not None else [],
        **(extra or {}),
    }
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "scores.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False))
    md = [f"# {title}", "", "## Scores (mean ± std over seeds)", ""]
    view = agg.select(
        "system",
        "direction",
        "seeds",
        pl.format("{} ± {}", pl.col("bleu_mean").round(2), pl.col("bleu_std").round(2)).alias("BLEU"),
        pl.format("{} ± {}", pl.col("chrf_mean").round(2), pl.col("chrf_std").round(2)).alias("chrF++"),
        pl.format("{} ± {}", pl.col("ter_mean").round(2), pl.col("ter_std").round(2)).alias("TER"),
        "n_empty",
    )
    md += [_md_table(view), ""]
    if sig is not None and sig.height:
        pv = (
            sig.filter(pl.col("p_value").is_not_null())
            .group_by(["system", "direction", "metric"], maintain_order=True)
            .agg(pl.col("p_value").max().alias("max p over seeds"))
        )
        md += [
            "## Paired bootstrap against the baseline",
            "",
            _md_table(pv.sort(["direction", "system", "metric"]), "{:.4f}"),
            "",
        ]
    if retention is not None and retention.height:
        md += ["## Retention of pre-trained abilities", "", _md_table(retention), ""]
    if cost is not None and cost.height:
        md += ["## Cost", "", _md_table(cost), ""]
    md += ["## Metric signatures", ""]
    md += [f"- {m}: `{s}`" for m, sigs in signatures.items() for s in sigs]
    md += [""]
    paths["md"].write_text("\n".join(md))
    plot_scores(agg, paths["png"])
    return paths


def plot_scores(agg: pl.DataFrame, out: Path, metrics: Sequence[str] = ("bleu", "chrf")) -> Path:
    """Grouped bars per direction and system, error bars = std over seeds."""
    directions = agg["direction"].unique(maintain_order=True).to_list()
    systems = agg["system"].unique(maintain_order=True).to_list()
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    width = 0.8 / max(len(systems), 1)
    x = np.arange(len(directions))
    for ax, m in zip(axes[0], metrics, strict=True):
        for i, s in enumerate(systems):
            sub = agg.filter(pl.col("system") == s)
            by_dir = {
                d: (mu, sd) for d, mu, sd in sub.select("direction", f"{m}_mean", f"{m}_std").iter_rows()
            }
            vals = [by_dir.get(d, (0.0, 0.0)) for d in directions]
            ax.bar(x + i * width, [v[0] for v in vals], width, yerr=[v[1] for v in vals], label=s, capsize=2)
        ax.set_xticks(x + width * (len(systems) - 1) / 2, directions)
        ax.set_ylabel({"bleu": "BLEU", "chrf": "chrF++", "ter": "TER"}[m])
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
