"""The System interface: every image-translation system answers one call, in input order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from mnaft_core.evaluation.ocr import OcrLine
from mnaft_core.evaluation.systems import (
    Generation,
    ImageInput,
    MllmDirect,
    OcrMtCascade,
    ReadThenTranslate,
    System,
    load_direct,
)
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.prompts import Example, generate
from mnaft_core.models.tiny import save_tiny


class _Ocr:
    """Reads the image's width as its text, so each output can be traced to its input."""

    def covers(self, script: str) -> bool:
        return True

    def read_lines(self, image: Image.Image) -> list[OcrLine]:
        return [OcrLine(f"w{image.width}", (0, 0, 1, 1), 1.0)]


class _Mt:
    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        return [f"{src}>{tgt}:{t}" for t in texts]


def _inputs() -> list[ImageInput]:
    return [
        ImageInput(Image.new("RGB", (40 + 8 * i, 32), "white"), src, tgt, "Latn")
        for i, (src, tgt) in enumerate([("en", "de"), ("de", "en"), ("en", "de"), ("fr", "en")])
    ]


def test_the_cascade_translates_per_direction_and_keeps_input_order() -> None:
    cascade: System = OcrMtCascade("ocr+mt", _Ocr(), _Mt())  # type: ignore[arg-type]
    out = cascade.translate(_inputs())
    assert out.readings == ["w40", "w48", "w56", "w64"]
    assert out.hypotheses == ["en>de:w40", "de>en:w48", "en>de:w56", "fr>en:w64"]
    with pytest.raises(ValueError, match="needs the source language"):
        cascade.translate([ImageInput(Image.new("RGB", (8, 8)), "", "de")])


def test_mllm_systems_are_the_model_generating_their_prompts(tmp_path: Path) -> None:
    folder = save_tiny("qwen2-vl", tmp_path / "tiny")
    gen = Generation(max_new_tokens=3, batch_size=2)
    direct = load_direct("base", ModelConfig(name_or_path=str(folder), device="cpu"), gen)
    inputs = _inputs()

    def run(examples: list[Example]) -> list[str]:
        return generate(direct.model, direct.processor, examples, max_new_tokens=3, batch_size=2)

    expected = run([Example("translate_image", i.src, i.tgt, image=i.image) for i in inputs])
    assert direct.translate(inputs).hypotheses == expected and direct.translate(inputs).readings is None
    own = ReadThenTranslate("own", direct.model, direct.processor, gen).translate(inputs)
    reads = run([Example("read_image", i.src, i.src, image=i.image) for i in inputs])
    assert own.readings == reads
    pairs = zip(inputs, reads, strict=True)
    assert own.hypotheses == run([Example("translate_text", i.src, i.tgt, text=r) for i, r in pairs])
    assert isinstance(direct, MllmDirect)
