"""The cascade's OCR reads the zh and ja images the data stage renders (CJK font, no tofu)."""

from __future__ import annotations

import numpy as np
import pytest

from mnaft_core.data.config import RenderConfig
from mnaft_core.data.fonts import FontLibrary, detect_script
from mnaft_core.data.render import render_text
from mnaft_core.evaluation.metrics import error_rate
from mnaft_core.evaluation.ocr import OcrConfig, make_ocr, ocr_texts

CLEAN = RenderConfig(height=48, max_width=320, font_size=(28, 28), max_lines=1, rotation_deg=0.0, blur=0.0,
                     backgrounds=("flat",), min_contrast=0.9, padding=(6, 6))  # fmt: skip


@pytest.mark.parametrize(("lang", "text"), [("zh", "打开文件"), ("ja", "ファイルを開く")])
def test_rapidocr_reads_rendered_cjk(lang: str, text: str) -> None:
    script = detect_script(text, lang)
    rendered = render_text(text, script, np.random.default_rng(0), CLEAN, FontLibrary.discover())
    assert "CJK" in rendered.font  # a CJK face, not a Latin one drawing boxes
    engine = make_ocr(OcrConfig(), scripts=[script])
    (read,) = ocr_texts(engine, [rendered.image], [script])
    assert error_rate([read], [text]) <= 0.25, read
