"""The evaluate stage as one call: every system on the same test samples -> outputs, scores, report.

Systems: the base model zero-shot, the base model's own read-then-translate cascade, the OCR -> MT
cascade, and each fine-tuned checkpoint (one per method and seed). Retention (reading CER and text
translation chrF++ against the base) shows what fine-tuning cost the model elsewhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from mnaft_core._base import ProgressFn
from mnaft_core.data.dataset import Sample
from mnaft_core.evaluation.metrics import corpus_scores, error_rate
from mnaft_core.evaluation.mt import NllbTranslator
from mnaft_core.evaluation.ocr import make_ocr
from mnaft_core.evaluation.report import score_outputs, significance, write_report
from mnaft_core.evaluation.systems import (
    EvaluateConfig,
    Generation,
    ImageInput,
    MllmDirect,
    OcrMtCascade,
    ReadThenTranslate,
    Row,
    System,
    inputs_of,
    load_direct,
    read_images,
    rows,
    translate_texts,
)
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import pick_device, resolve

BASE, OWN_CASCADE, CASCADE = "base", "base-read+translate", "ocr+mt"
UNIT_META = "mnaft_evaluation_unit"


@dataclass(frozen=True)
class Candidate:
    """A fine-tuned checkpoint under evaluation."""

    system: str  # e.g. mnaft, full, lora, random
    seed: int
    path: Path
    cost: Mapping[str, Any]


RETENTION_FILE = "retention_outputs.parquet"  # per string: what each model read, and its text translation


def retention_rows(
    system: MllmDirect,
    samples: Sequence[Sample],
    inputs: Sequence[ImageInput],
    gen: Generation,
    seed: int = 0,
) -> list[Row]:
    """Per sample: the MLLM's reading of the image (``reading``, scored against ``source``) and its text
    translation of the gold source text (``text_hypothesis``, scored against ``reference``)."""
    reads = read_images(system.model, system.processor, inputs, gen)
    texts = translate_texts(system.model, system.processor, [s.src_text for s in samples], inputs, gen)
    return [
        {**row, "reading": r, "text_hypothesis": t}
        for row, r, t in zip(rows(system.name, seed, samples, texts), reads, texts, strict=True)
    ]


def retention_of(table: Sequence[Row]) -> dict[str, float]:
    """Reading CER (all samples) and text-translation chrF++ (mean over directions) of retention rows."""
    chrf = [
        corpus_scores(
            [r["text_hypothesis"] for r in table if r["direction"] == d],
            [r["reference"] for r in table if r["direction"] == d],
            d.split("-")[-1],
        )["chrf"].score
        for d in sorted({r["direction"] for r in table})
    ]
    return {
        "reading_cer": error_rate([r["reading"] for r in table], [r["source"] for r in table], "char"),
        "text_chrf": sum(chrf) / len(chrf),
    }


def retention(
    system: MllmDirect, samples: Sequence[Sample], inputs: Sequence[ImageInput], gen: Generation
) -> dict[str, float]:
    """Reading CER and text-translation chrF++ (gold source text in) of the system's MLLM."""
    return retention_of(retention_rows(system, samples, inputs, gen))


def run_system(system: System, samples: Sequence[Sample], inputs: Sequence[ImageInput], seed: int = 0
               ) -> tuple[list[Row], float | None]:  # fmt: skip
    """The system's output rows, and the CER of what it read when it is a cascade."""
    out = system.translate(inputs)
    refs = [s.src_text for s in samples]
    cer = error_rate(out.readings, refs, "char") if out.readings is not None else None
    return rows(system.name, seed, samples, out.hypotheses), cer


@dataclass(frozen=True)
class Unit:
    """One model's share of an evaluation, loaded once: the base (with its own cascade and its
    retention), the OCR -> MT cascade, or one checkpoint. Units are what evaluation parts split: the
    load is the costly step, and every corpus-level figure (CER, chrF++) is whole inside one unit."""

    name: str  # base, ocr+mt, or system-seed
    candidate: Candidate | None = None


@dataclass(frozen=True)
class UnitResult:
    """What one unit contributes to the report: output rows, retention rows, headline extras."""

    rows: list[Row]
    retained: list[dict[str, Any]]
    extra: dict[str, Any]
    retention_rows: list[Row] = field(default_factory=list)  # per string (``retention_rows``)


def units(candidates: Sequence[Candidate], cfg: EvaluateConfig) -> list[Unit]:
    """The evaluation's units, in report order."""
    head = [Unit(BASE)] + ([Unit(CASCADE)] if cfg.cascade else [])
    return head + [Unit(f"{c.system}-{c.seed}", c) for c in candidates]


def run_unit(
    unit: Unit,
    base: ModelConfig,
    samples: Sequence[Sample],
    cfg: EvaluateConfig,
    inputs: Sequence[ImageInput] | None = None,
    progress: bool = True,
) -> UnitResult:
    """One unit's outputs; its model is freed before this returns."""
    inputs = inputs_of(samples) if inputs is None else inputs
    gen, quiet = Generation.of(cfg, progress=progress), Generation.of(cfg, progress=False)
    table: list[Row] = []
    extra: dict[str, Any] = {}
    if unit.name == BASE:
        base_system = load_direct(BASE, base, gen)
        table += run_system(base_system, samples, inputs)[0]
        if cfg.own_cascade:
            own = ReadThenTranslate(OWN_CASCADE, base_system.model, base_system.processor, gen)
            own_rows, extra["base_reading_cer"] = run_system(own, samples, inputs)
            table += own_rows
            del own
        kept = retention_rows(base_system, samples, inputs, quiet) if cfg.retention else []
        retained = [{"system": BASE, "seed": 0, **retention_of(kept)}] if kept else []
        del base_system  # the base model's memory is free before the next one loads
        return UnitResult(table, retained, extra, kept)
    if unit.candidate is None:  # the OCR -> MT cascade
        engine = make_ocr(cfg.ocr, sorted({s.script for s in samples}))
        device = str(pick_device(base.device))
        mt = NllbTranslator(resolve(cfg.mt_model), device=device, num_beams=cfg.mt_num_beams)
        cascade_rows, extra["ocr_cer"] = run_system(OcrMtCascade(CASCADE, engine, mt), samples, inputs)
        return UnitResult(cascade_rows, [], extra)
    c = unit.candidate
    tuned = load_direct(c.system, base, gen, c.path)
    table += run_system(tuned, samples, inputs, seed=c.seed)[0]
    kept = retention_rows(tuned, samples, inputs, quiet, seed=c.seed) if cfg.retention else []
    retained = [{"system": c.system, "seed": c.seed, **retention_of(kept)}] if kept else []
    del tuned
    return UnitResult(table, retained, extra, kept)


def write_unit(result: UnitResult, path: Path) -> None:
    """One unit's result as one Parquet file (rows; retention and extras in its metadata), replaced
    atomically: a file that exists is a finished unit."""
    tmp = path.with_name(f".{path.name}.tmp")
    meta = json.dumps({"retained": result.retained, "extra": result.extra,
                       "retention_rows": result.retention_rows}, ensure_ascii=False)  # fmt: skip
    pl.DataFrame(result.rows).write_parquet(tmp, metadata={UNIT_META: meta})
    os.replace(tmp, path)


def read_unit(path: Path) -> UnitResult:
    meta = pl.read_parquet_metadata(path).get(UNIT_META)
    if meta is None:
        raise ValueError(f"{path}: not an evaluation unit (no {UNIT_META} metadata)")
    m = json.loads(meta)
    return UnitResult(
        pl.read_parquet(path).to_dicts(), m["retained"], m["extra"], m.get("retention_rows", [])
    )


def evaluate(
    base: ModelConfig,
    candidates: Sequence[Candidate],
    samples: Sequence[Sample],
    cfg: EvaluateConfig,
    out: Path,
    *,
    baseline: str = "mnaft",
    on_progress: ProgressFn | None = None,
    progress: bool = True,
    done: Mapping[str, UnitResult] | None = None,
) -> dict[str, Any]:
    """Run every system, write outputs.parquet + report.{json,md} + scores.png; return the headline.

    ``done``: units already run elsewhere (evaluation parts), by name; the others run here.
    ``progress=False``: no per-batch bars (the caller shows one display for the whole stage)."""
    todo, done = units(candidates, cfg), dict(done or {})
    inputs = inputs_of(samples) if any(u.name not in done for u in todo) else []
    results = []
    for i, u in enumerate(todo):
        results.append(done.get(u.name) or run_unit(u, base, samples, cfg, inputs, progress))
        if on_progress is not None:
            on_progress(i + 1, len(todo))
    table = [r for res in results for r in res.rows]
    retained = [r for res in results for r in res.retained]
    kept = [r for res in results for r in res.retention_rows]
    extra = {k: v for res in results for k, v in res.extra.items()}
    outputs = pl.DataFrame(table)
    out.mkdir(parents=True, exist_ok=True)
    outputs.write_parquet(out / "outputs.parquet")
    if kept:
        pl.DataFrame(kept).write_parquet(out / RETENTION_FILE)
    scores = score_outputs(outputs)
    systems = set(outputs["system"].to_list())
    sig = (
        significance(outputs, baseline, cfg.significance_samples)
        if baseline in systems and cfg.significance_samples
        else None
    )
    ret = (
        pl.DataFrame(retained)
        .group_by("system", maintain_order=True)
        .agg(
            pl.col("reading_cer").mean().round(4),
            pl.col("text_chrf").mean().round(2),
            pl.len().alias("seeds"),
        )
        if retained
        else None
    )
    cost = (
        pl.DataFrame(
            [
                {
                    "system": c.system,
                    "seed": c.seed,
                    **{
                        k: c.cost.get(k)
                        for k in ("trainable_params", "optimizer_state_bytes", "seconds", "steps")
                    },
                }
                for c in candidates
            ]
        )
        if candidates
        else None
    )
    if cost is not None:
        cost = cost.group_by("system", maintain_order=True).agg(
            pl.col("trainable_params").first(), pl.col("optimizer_state_bytes").first(),
            pl.col("seconds").mean().round(1).alias("train_seconds_mean"), pl.col("steps").first(),
        )  # fmt: skip
    write_report(out, scores, sig, ret, cost, extra=extra)
    agg = scores.group_by("system", maintain_order=True).agg(pl.col("bleu").mean(), pl.col("chrf").mean())
    return {"systems": agg.to_dicts(), **extra}
