from __future__ import annotations

import importlib.util
import os

import matplotlib
import pytest
from PIL import Image, ImageDraw, ImageFont

from mnaft_core.evaluation.ocr import (
    OcrConfig,
    OcrError,
    OcrLine,
    join_lines,
    make_ocr,
    ocr_texts,
    reading_order,
)


def _line(text: str, x: float, y: float, w: float = 40, h: float = 12) -> OcrLine:
    return OcrLine(text, (x, y, x + w, y + h), 0.9)


def test_reading_order_rows_then_left_to_right() -> None:
    lines = [_line("world", 60, 2), _line("second", 5, 30), _line("Hello", 5, 4), _line("row", 70, 31)]
    assert [ln.text for ln in reading_order(lines)] == ["Hello", "world", "second", "row"]
    assert join_lines(lines, "Latn") == "Hello world second row"
    assert join_lines([_line("你好", 0, 0), _line("世界", 50, 1)], "Hans") == "你好世界"


def test_rapidocr_reads_a_latin_strip() -> None:
    font = ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts/ttf/DejaVuSans.ttf"), 20)
    img = Image.new("RGB", (256, 32), "white")
    ImageDraw.Draw(img).text((4, 4), "Open the file", fill="black", font=font)
    blank = Image.new("RGB", (64, 32), "white")
    engine = make_ocr(OcrConfig(), scripts=["Latn"])
    assert ocr_texts(engine, [img, blank], ["Latn", "Latn"]) == ["Open the file", ""]


def test_uncovered_script_fails_before_work() -> None:
    with pytest.raises(OcrError, match="does not read script\\(s\\) Arab, Cyrl"):
        make_ocr(OcrConfig(), scripts=["Latn", "Cyrl", "Arab"])
    with pytest.raises(OcrError, match="custom rec_model_path needs `scripts`"):
        make_ocr(OcrConfig(rec_model_path=__file__))  # type: ignore[arg-type]
    with pytest.raises(OcrError, match="does not exist"):
        make_ocr(OcrConfig(rec_model_path="/nonexistent/rec.onnx", scripts=("Cyrl",)))  # type: ignore[arg-type]


@pytest.mark.skipif(importlib.util.find_spec("paddleocr") is not None, reason="paddleocr is installed here")
def test_paddleocr_missing_is_a_clear_error() -> None:
    with pytest.raises(OcrError, match=r"pip install 'mnaft\[paddle\]'"):
        make_ocr(OcrConfig(engine="paddleocr"))


@pytest.mark.skipif(
    importlib.util.find_spec("paddleocr") is None or not os.environ.get("MNAFT_PADDLE_MODELS"),
    reason="paddleocr tests need the paddle extra and local models in MNAFT_PADDLE_MODELS=det_dir:rec_dir",
)
def test_paddleocr_reads_with_local_models() -> None:
    det, rec = os.environ["MNAFT_PADDLE_MODELS"].split(":")
    font = ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts/ttf/DejaVuSans.ttf"), 20)
    img = Image.new("RGB", (256, 32), "white")
    ImageDraw.Draw(img).text((4, 4), "Open the file", fill="black", font=font)
    engine = make_ocr(OcrConfig(engine="paddleocr", det_model_path=det, rec_model_path=rec), ["Latn"])  # type: ignore[arg-type]
    assert ocr_texts(engine, [img], ["Latn"]) == ["Open the file"]
