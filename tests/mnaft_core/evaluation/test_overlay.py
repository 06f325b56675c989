"""Translations drawn into the picture: the OCR reader reads the rendered output as the translation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnaft_core.evaluation.metrics import error_rate
from mnaft_core.evaluation.ocr import OcrConfig, join_lines, make_ocr
from mnaft_core.evaluation.overlay import translate_image
from mnaft_core.viz.text import font_for

ROOT = Path(__file__).resolve().parents[3]
OUTPUT = ROOT / "tests" / "output"
SIGNS = [("OPEN FILE", (40, 30), 34), ("Save changes", (40, 120), 28)]


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    return make_ocr(OcrConfig(), ["Latn", "Jpan"])


def _poster() -> Image.Image:
    """Two signs on different backgrounds, dark and light text."""
    img = Image.new("RGB", (420, 190), (250, 246, 235))
    draw = ImageDraw.Draw(img)
    draw.rectangle([20, 100, 400, 175], fill=(30, 60, 120))
    for (text, xy, size), colour in zip(SIGNS, [(20, 20, 20), (245, 245, 245)], strict=True):
        draw.text(xy, text, font=font_for(text, "en", size), fill=colour)
    return img


def _fake_mt(table: dict[str, str]):  # type: ignore[no-untyped-def]
    """A translator whose output the test controls: what OCR read -> a fixed translation."""
    seen: list[str] = []

    def translate(crops: Sequence[Image.Image], texts: Sequence[str]) -> list[str]:
        seen.extend(texts)
        return [table[t.upper().strip()] for t in texts]

    return translate, seen


@pytest.mark.parametrize(
    ("lang", "table"),
    [
        ("de", {"OPEN FILE": "DATEI ÖFFNEN", "SAVE CHANGES": "Speichern"}),
        ("ja", {"OPEN FILE": "ファイルを開く", "SAVE CHANGES": "保存する"}),
    ],
)
def test_rendered_translation_reads_as_the_translation(engine, lang: str, table: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    poster = _poster()
    translate, seen = _fake_mt(table)
    out, regions = translate_image(poster, engine, translate, lang)
    assert out.size == poster.size and len(regions) == 2
    assert [s.upper() for s in seen] == ["OPEN FILE", "SAVE CHANGES"]  # boxes in reading order
    OUTPUT.mkdir(exist_ok=True)
    out.save(OUTPUT / f"overlay_{lang}.png")
    script = "Jpan" if lang == "ja" else "Latn"
    for region in regions:  # each box, read back, is its translation; the source text is gone
        x0, y0, x1, y1 = region.box
        crop = out.crop((max(0, x0 - 8), max(0, y0 - 8), x1 + 8, y1 + 8))
        read = join_lines(engine.read_lines(crop), script)
        assert error_rate([read], [region.translation], "char") <= 0.15, (read, region.translation)
    whole = join_lines(engine.read_lines(out), script)
    assert "OPEN" not in whole.upper() and "SAVE" not in whole.upper(), whole
    # outside the boxes nothing changed; inside, the background is the surrounding colour
    a, b = np.asarray(poster).astype(int), np.asarray(out).astype(int)
    inside = np.zeros(a.shape[:2], bool)
    for r in regions:
        inside[r.box[1] : r.box[3], r.box[0] : r.box[2]] = True
    assert np.abs(a - b)[~inside].max() == 0
    x0, y0, x1, y1 = regions[1].box
    box = b[y0:y1, x0:x1].reshape(-1, 3)
    assert (np.abs(box - [30, 60, 120]).sum(axis=1) < 40).mean() > 0.5  # mostly the sign's blue
