"""Translations drawn back into the picture, as image-translation apps show them.

The cascade's text detector (rapidocr's PP-OCR) finds the text boxes; each box is translated by any
function given (the CLI uses the MLLM on the box's crop); the box's text is painted out with the
background around it (OpenCV inpainting from the box's border), and the translation is drawn in the
text's own colour with the largest font that fits the box (wrapping onto more lines when that is
larger), Noto Sans CJK for Chinese and Japanese.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

from mnaft_core.evaluation.ocr import OcrEngine, reading_order
from mnaft_core.viz.text import draw_lines, fit_font

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, x1/y1 exclusive)
# (crops of the boxes, their OCR text) -> one translation per box
Translate = Callable[[Sequence[Image.Image], Sequence[str]], Sequence[str]]


@dataclass(frozen=True)
class Region:
    box: Box
    text: str  # what OCR read in the box
    translation: str


def detect(engine: OcrEngine, image: Image.Image, pad: int = 2) -> list[tuple[Box, str]]:
    """Text boxes in reading order (rows top to bottom, each left to right), padded, clipped."""
    out = []
    for line in reading_order(engine.read_lines(image)):
        if not line.text.strip():
            continue
        x0, y0, x1, y1 = line.box
        right, bottom = int(np.ceil(x1)) + pad, int(np.ceil(y1)) + pad
        box = (
            max(0, int(x0) - pad),
            max(0, int(y0) - pad),
            min(image.width, right),
            min(image.height, bottom),
        )
        if box[2] > box[0] and box[3] > box[1]:
            out.append((box, line.text.strip()))
    return out


def _colours(rgb: np.ndarray, box: Box, ring: int = 3) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(background, text) colour of a box: the median of a ring just outside it, and the median of the
    box's pixels farthest from that background."""
    x0, y0, x1, y1 = box
    h, w = rgb.shape[:2]
    outer = rgb[max(0, y0 - ring) : min(h, y1 + ring), max(0, x0 - ring) : min(w, x1 + ring)].reshape(-1, 3)
    inner = rgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64)
    bg = np.median(outer, axis=0)
    dist = np.linalg.norm(inner - bg, axis=1)
    text = np.median(inner[dist >= np.quantile(dist, 0.9)], axis=0) if inner.size else 255 - bg

    def lum(c: np.ndarray) -> float:
        return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])

    if abs(lum(text) - lum(bg)) < 60:  # too faint to read: black or white, whichever contrasts
        text = np.zeros(3) if lum(bg) > 127 else np.full(3, 255.0)
    return tuple(int(v) for v in bg), tuple(int(v) for v in text)  # type: ignore[return-value]


def paint_out(image: Image.Image, boxes: Sequence[Box], radius: int = 5) -> Image.Image:
    """The boxes' contents replaced by the surrounding background (Telea inpainting)."""
    rgb = np.asarray(image.convert("RGB"))
    mask = np.zeros(rgb.shape[:2], dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = 255
    filled = cv2.inpaint(np.ascontiguousarray(rgb), mask, radius, cv2.INPAINT_TELEA)
    return Image.fromarray(filled)


def render_translations(image: Image.Image, regions: Sequence[Region], lang: str) -> Image.Image:
    """``image`` with each region's text painted out and its translation drawn in the box."""
    rgb = np.asarray(image.convert("RGB"))
    colours = [_colours(rgb, r.box) for r in regions]
    out = paint_out(image, [r.box for r in regions])
    draw = ImageDraw.Draw(out)
    for r, (_, fg) in zip(regions, colours, strict=True):
        if not r.translation.strip():
            continue
        x0, y0, x1, y1 = r.box
        inset = max(1, (y1 - y0) // 12)
        font, lines = fit_font(r.translation, lang, x1 - x0 - 2 * inset, y1 - y0 - 2 * inset)
        draw_lines(draw, (x0 + inset, y0 + inset, x1 - inset, y1 - inset), lines, font, fg)
    return out


def translate_image(
    image: Image.Image, engine: OcrEngine, translate: Translate, lang: str
) -> tuple[Image.Image, list[Region]]:
    """Detect, translate each box, draw: the rendered picture and what was found and put where."""
    image = image.convert("RGB")
    found = detect(engine, image)
    crops = [image.crop(box) for box, _ in found]
    translations = list(translate(crops, [t for _, t in found])) if found else []
    if len(translations) != len(found):
        raise ValueError(f"the translator returned {len(translations)} texts for {len(found)} boxes")
    regions = [Region(box, text, tr) for (box, text), tr in zip(found, translations, strict=True)]
    return render_translations(image, regions, lang), regions
