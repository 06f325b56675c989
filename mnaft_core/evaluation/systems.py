"""The systems under evaluation, each turning test samples into output rows of one shape.

- an MLLM translating the image directly (the base model zero-shot, or any fine-tuned checkpoint);
- the MLLM's own cascade: it reads the image, then translates what it read as text (what the model
  knows in each modality alone; the modality gap is this minus the direct system);
- the OCR -> MT cascade (rapidocr or PaddleOCR, then NLLB), the external baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field
from torch import nn

from mnaft_core._base import StrictModel
from mnaft_core.data.dataset import Sample
from mnaft_core.evaluation.metrics import error_rate
from mnaft_core.evaluation.mt import NllbTranslator
from mnaft_core.evaluation.ocr import OcrConfig, OcrEngine, ocr_texts
from mnaft_core.models.prompts import Example, generate

Row = dict[str, Any]


class EvaluateConfig(StrictModel):
    """What is evaluated and how."""

    split: str = Field("test", pattern="^(train|val|test)$", description="dataset split to evaluate on")
    max_samples_per_direction: int = Field(64, ge=1, description="test samples per direction")
    batch_size: int = Field(16, ge=1, description="generation batch size")
    max_new_tokens: int = Field(32, ge=1, le=4096, description="generation length limit")
    num_beams: int = Field(1, ge=1, le=16, description="MLLM decoding: 1 = greedy, more = beam search")
    own_cascade: bool = Field(True, description="also run the MLLM's read-then-translate cascade")
    cascade: bool = Field(True, description="also run the OCR -> MT cascade baseline")
    ocr: OcrConfig = Field(default_factory=OcrConfig, description="OCR engine of the cascade")
    mt_model: str = Field(
        "embedded:nllb-organism",
        description="NLLB/M2M100 folder or hub id (facebook/nllb-200-distilled-600M)",
    )
    mt_num_beams: int = Field(1, ge=1, le=16, description="beam size of the cascade's MT")
    significance_samples: int = Field(1000, ge=0, description="paired-bootstrap resamples (0 = off)")


def _rows(system: str, seed: int, samples: Sequence[Sample], hyps: Sequence[str]) -> list[Row]:
    return [
        {
            "sample_id": s.id,
            "system": system,
            "seed": seed,
            "direction": s.direction,
            "src_lang": s.src,
            "tgt_lang": s.tgt,
            "source": s.src_text,
            "reference": s.tgt_text,
            "hypothesis": h,
        }
        for s, h in zip(samples, hyps, strict=True)
    ]


def direct(
    system: str,
    model: nn.Module,
    processor: Any,
    samples: Sequence[Sample],
    cfg: EvaluateConfig,
    seed: int = 0,
) -> list[Row]:
    """The MLLM translates each image in one step."""
    examples = [Example("translate_image", s.src, s.tgt, image=s.pil()) for s in samples]
    hyps = generate(model, processor, examples, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                    num_beams=cfg.num_beams,
                    progress=True)  # fmt: skip
    return _rows(system, seed, samples, hyps)


def own_cascade(
    system: str, model: nn.Module, processor: Any, samples: Sequence[Sample], cfg: EvaluateConfig
) -> tuple[list[Row], float]:
    """The MLLM reads the image, then translates its reading; returns rows and the reading CER."""
    reads = generate(
        model,
        processor,
        [Example("read_image", s.src, s.src, image=s.pil()) for s in samples],
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        num_beams=cfg.num_beams,
        progress=True,
    )
    hyps = generate(
        model,
        processor,
        [Example("translate_text", s.src, s.tgt, text=r) for s, r in zip(samples, reads, strict=True)],
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        num_beams=cfg.num_beams,
        progress=True,
    )
    return _rows(system, 0, samples, hyps), error_rate(reads, [s.src_text for s in samples], "char")


def ocr_mt(
    system: str, engine: OcrEngine, mt: NllbTranslator, samples: Sequence[Sample]
) -> tuple[list[Row], float]:
    """OCR each image, translate the text with the MT model; returns rows and the OCR CER."""
    texts = ocr_texts(engine, [s.pil() for s in samples], [s.script for s in samples])
    hyps: dict[str, str] = {}
    for direction in sorted({s.direction for s in samples}):
        part = [(s, t) for s, t in zip(samples, texts, strict=True) if s.direction == direction]
        out = mt.translate([t for _, t in part], part[0][0].src, part[0][0].tgt)
        hyps.update({s.id: h for (s, _), h in zip(part, out, strict=True)})
    rows = _rows(system, 0, samples, [hyps[s.id] for s in samples])
    return rows, error_rate(texts, [s.src_text for s in samples], "char")
