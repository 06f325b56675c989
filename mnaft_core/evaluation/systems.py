"""Image-translation systems behind one interface: ``System.translate(inputs) -> Translations``.

- ``MllmDirect``: an MLLM translating the image in one step (the base model zero-shot, or any
  fine-tuned checkpoint: ``load_direct``);
- ``ReadThenTranslate``: the MLLM's own cascade: it reads the image, then translates what it read as
  text (what the model knows in each modality alone; the modality gap is this minus the direct system);
- ``OcrMtCascade``: OCR (rapidocr or PaddleOCR), then NLLB-style MT: the external baseline.

The evaluate stage, the organism's own measurements and `mnaft translate` all translate through these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from pydantic import Field
from torch import nn

from mnaft_core._base import StrictModel
from mnaft_core.data.dataset import Sample
from mnaft_core.evaluation.mt import NllbTranslator
from mnaft_core.evaluation.ocr import OcrConfig, OcrEngine, ocr_texts
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
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
    retention: bool = Field(
        True, description="also measure reading CER and text-translation chrF++ of every MLLM (retention)"
    )
    ocr: OcrConfig = Field(default_factory=OcrConfig, description="OCR engine of the cascade")
    mt_model: str = Field(
        "embedded:nllb-organism",
        description="NLLB/M2M100 folder or hub id (facebook/nllb-200-distilled-600M)",
    )
    mt_num_beams: int = Field(1, ge=1, le=16, description="beam size of the cascade's MT")
    significance_samples: int = Field(1000, ge=0, description="paired-bootstrap resamples (0 = off)")


@dataclass(frozen=True)
class ImageInput:
    """One image to translate: ``src`` may be empty (the model tells) for systems that allow it."""

    image: Image.Image
    src: str
    tgt: str
    script: str = ""  # ISO 15924, for OCR engines (how lines join, which model reads)


def inputs_of(samples: Sequence[Sample]) -> list[ImageInput]:
    return [ImageInput(s.pil(), s.src, s.tgt, s.script) for s in samples]


@dataclass(frozen=True)
class Translations:
    """A system's outputs, in input order; a cascade also returns what it read off each image."""

    hypotheses: list[str]
    readings: list[str] | None = None


class System(Protocol):
    name: str

    def translate(self, inputs: Sequence[ImageInput]) -> Translations: ...


@dataclass(frozen=True)
class Generation:
    """MLLM decoding settings shared by every MLLM system."""

    max_new_tokens: int = 32
    batch_size: int = 16
    num_beams: int = 1
    progress: bool = False

    @classmethod
    def of(cls, cfg: EvaluateConfig, progress: bool = True) -> Generation:
        return cls(cfg.max_new_tokens, cfg.batch_size, cfg.num_beams, progress)


def run_mllm(model: nn.Module, processor: Any, examples: Sequence[Example], gen: Generation) -> list[str]:
    return generate(model, processor, examples, max_new_tokens=gen.max_new_tokens, batch_size=gen.batch_size,
                    num_beams=gen.num_beams, progress=gen.progress)  # fmt: skip


def read_images(model: nn.Module, processor: Any, inputs: Sequence[ImageInput], gen: Generation) -> list[str]:
    """What the MLLM reads in each image (its OCR ability)."""
    return run_mllm(
        model, processor, [Example("read_image", i.src, i.src, image=i.image) for i in inputs], gen
    )


def translate_texts(
    model: nn.Module, processor: Any, texts: Sequence[str], inputs: Sequence[ImageInput], gen: Generation
) -> list[str]:
    """The MLLM translating ``texts`` (one per input, in its direction) as text."""
    if any(not i.src for i in inputs):
        raise ValueError("translating text needs the source language of every input")
    examples = [Example("translate_text", i.src, i.tgt, text=t) for i, t in zip(inputs, texts, strict=True)]
    return run_mllm(model, processor, examples, gen)


@dataclass
class MllmDirect:
    """The MLLM translates each image in one step."""

    name: str
    model: nn.Module
    processor: Any
    gen: Generation

    def translate(self, inputs: Sequence[ImageInput]) -> Translations:
        examples = [Example("translate_image", i.src, i.tgt, image=i.image) for i in inputs]
        return Translations(run_mllm(self.model, self.processor, examples, self.gen))


@dataclass
class ReadThenTranslate:
    """The MLLM reads the image, then translates its reading as text."""

    name: str
    model: nn.Module
    processor: Any
    gen: Generation

    def translate(self, inputs: Sequence[ImageInput]) -> Translations:
        reads = read_images(self.model, self.processor, inputs, self.gen)
        return Translations(translate_texts(self.model, self.processor, reads, inputs, self.gen), reads)


def translate_by_direction(
    mt: NllbTranslator, texts: Sequence[str], inputs: Sequence[ImageInput]
) -> list[str]:
    """Text MT of ``texts`` (one per input), batched per direction, in input order."""
    out = [""] * len(texts)
    by_direction: dict[tuple[str, str], list[int]] = {}
    for i, x in enumerate(inputs):
        by_direction.setdefault((x.src, x.tgt), []).append(i)
    for (src, tgt), idx in sorted(by_direction.items()):
        for i, h in zip(idx, mt.translate([texts[i] for i in idx], src, tgt), strict=True):
            out[i] = h
    return out


@dataclass
class OcrMtCascade:
    """OCR each image, then translate the text with the MT model."""

    name: str
    engine: OcrEngine
    mt: NllbTranslator

    def translate(self, inputs: Sequence[ImageInput]) -> Translations:
        if any(not i.src for i in inputs):
            raise ValueError(f"{self.name}: the MT model needs the source language of every input")
        texts = ocr_texts(self.engine, [i.image for i in inputs], [i.script for i in inputs])
        return Translations(translate_by_direction(self.mt, texts, inputs), texts)


def load_direct(name: str, model: ModelConfig, gen: Generation, path: Path | str | None = None) -> MllmDirect:
    """The image-direct system of ``model``, or of a checkpoint folder ``path`` loaded with its options."""
    cfg = model if path is None else model.model_copy(update={"name_or_path": str(path)})
    loaded = load_mllm(cfg)
    return MllmDirect(name, loaded.model, loaded.processor, gen)


def rows(system: str, seed: int, samples: Sequence[Sample], hyps: Sequence[str]) -> list[Row]:
    """Output rows (``report.OUTPUT_COLUMNS``) of one system run on ``samples``."""
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
