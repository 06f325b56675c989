"""Render a text line into a small RGB strip with a seeded, varied style.

Styles vary (font, size, colours with a minimum contrast, flat/gradient/noise background, blur, a
small rotation) so a model cannot key on one look; everything is drawn from the caller's RNG, so the
same text and seed give the same PNG bytes.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnaft_core.data.config import RenderConfig
from mnaft_core.data.fonts import FontFile, FontLibrary
from mnaft_core.data.types import DataError

WIDTH_MULTIPLE = 16
_NO_SPACE_SCRIPTS = {"Hans", "Hant", "Jpan", "Thai"}  # wrap per character


class TooLongToRenderError(DataError):
    """The text does not fit the image even at the smallest font size and max_lines."""


@dataclass(frozen=True)
class Rendered:
    """A rendered strip, the font file name, the JSON-able style and one ink box per text line."""

    image: Image.Image
    font: str
    style: dict[str, Any]
    boxes: list[tuple[int, int, int, int]]

    def png(self) -> bytes:
        """PNG bytes (deterministic: Pillow writes no timestamp)."""
        buf = io.BytesIO()
        self.image.save(buf, format="PNG", optimize=False)
        return buf.getvalue()


@lru_cache(maxsize=256)
def _font(font: FontFile, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font.path), size=size, index=font.index)


def _luminance(rgb: tuple[int, int, int]) -> float:
    r, g, b = (c / 255 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _colours(
    rng: np.random.Generator, min_contrast: float
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(text, background) colours whose luminance differs by at least min_contrast."""
    for _ in range(32):
        bg = tuple(int(x) for x in rng.integers(0, 256, 3))
        fg = tuple(int(x) for x in rng.integers(0, 256, 3))
        if abs(_luminance(fg) - _luminance(bg)) >= min_contrast:  # type: ignore[arg-type]
            return fg, bg  # type: ignore[return-value]
    bg = tuple(int(x) for x in rng.integers(0, 256, 3))
    fg = (0, 0, 0) if _luminance(bg) > 0.5 else (255, 255, 255)  # type: ignore[arg-type]
    return fg, bg  # type: ignore[return-value]


def wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float, per_char: bool) -> list[str]:
    """Greedy line breaking: per character for scripts written without spaces, else per word."""
    tokens = list(text) if per_char else text.split(" ")
    sep = "" if per_char else " "
    lines: list[str] = []
    cur = ""
    for tok in tokens:
        cand = f"{cur}{sep}{tok}" if cur else tok
        if cur and font.getlength(cand) > max_width:
            lines.append(cur.strip())
            cur = tok
        else:
            cur = cand
    if cur.strip():
        lines.append(cur.strip())
    return lines


def _layout(
    text: str,
    font: ImageFont.FreeTypeFont,
    size: int,
    avail_w: int,
    avail_h: int,
    max_lines: int,
    per_char: bool,
) -> tuple[list[str], list[tuple[int, int, int, int]], int] | None:
    """Lines, their ink boxes relative to the first baseline, and the pitch; None if it does not fit."""
    one = font.getlength(text)
    lines = [text] if one <= avail_w else wrap(text, font, avail_w, per_char)
    if len(lines) > max_lines:
        return None
    pitch = math.ceil(size * 1.15)
    boxes = []
    for i, line in enumerate(lines):
        x0, y0, x1, y1 = font.getbbox(line, anchor="ls")
        boxes.append((int(x0), int(y0) + i * pitch, int(x1), int(y1) + i * pitch))
    width = max(b[2] for b in boxes) - min(b[0] for b in boxes)
    height = max(b[3] for b in boxes) - min(b[1] for b in boxes)
    if width > avail_w or height > avail_h:
        return None
    return lines, boxes, pitch


def _background(kind: str, w: int, h: int, bg: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    base = np.empty((h, w, 3), dtype=np.float32)
    base[:] = bg
    if kind == "gradient":
        shift = rng.uniform(-40, 40, 3).astype(np.float32)
        ramp = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :, None]
        base = base + ramp * shift
    elif kind == "noise":
        base = base + rng.normal(0.0, rng.uniform(4, 14), (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def render_text(
    text: str, script: str, rng: np.random.Generator, cfg: RenderConfig, fonts: FontLibrary
) -> Rendered:
    """Render `text` in a sampled style; shrink the font or wrap (up to max_lines) until it fits.

    Raises NoFontError if no font covers the text, TooLongToRenderError if it cannot fit.
    """
    candidates = fonts.for_text(text, script)
    font_file = candidates[int(rng.integers(len(candidates)))]
    pad = int(rng.integers(cfg.padding[0], cfg.padding[1] + 1))
    size = int(rng.integers(cfg.font_size[0], cfg.font_size[1] + 1))
    fg, bg = _colours(rng, cfg.min_contrast)
    background = cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))]
    blur = float(rng.uniform(0, cfg.blur))
    angle = float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    per_char = script in _NO_SPACE_SCRIPTS
    avail_w, avail_h = cfg.max_width - 2 * pad, cfg.height - 2 * pad
    laid = None
    while size >= cfg.min_font_size:
        font = _font(font_file, size)
        laid = _layout(text, font, size, avail_w, avail_h, cfg.max_lines, per_char)
        if laid is not None:
            break
        size -= 1
    if laid is None:
        raise TooLongToRenderError(
            f"text {text!r} does not fit {cfg.max_width}x{cfg.height} px in {cfg.max_lines} line(s) "
            f"at font size >= {cfg.min_font_size}"
        )
    lines, rel, pitch = laid
    ink_x0, ink_y0 = min(b[0] for b in rel), min(b[1] for b in rel)
    ink_w, ink_h = max(b[2] for b in rel) - ink_x0, max(b[3] for b in rel) - ink_y0
    width = min(cfg.max_width, math.ceil((ink_w + 2 * pad) / WIDTH_MULTIPLE) * WIDTH_MULTIPLE)
    ox = (width - ink_w) // 2 - ink_x0  # origin (left, first baseline) centring the ink block
    oy = (cfg.height - ink_h) // 2 - ink_y0
    img = _background(background, width, cfg.height, bg, rng)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((ox, oy + i * pitch), line, font=font, fill=fg, anchor="ls")
    boxes = [(b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy) for b in rel]
    if abs(angle) > 0.05:
        img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=bg)
        boxes = [_rotate_box(b, angle, width, cfg.height) for b in boxes]
    if blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    style = {
        "font_size": size,
        "padding": pad,
        "text_color": list(fg),
        "background_color": list(bg),
        "background": background,
        "blur": round(blur, 3),
        "rotation": round(angle, 3),
        "lines": len(lines),
    }
    return Rendered(img, font_file.name, style, boxes)


def _rotate_box(box: tuple[int, int, int, int], angle: float, w: int, h: int) -> tuple[int, int, int, int]:
    """Axis-aligned box around a box rotated like PIL's `rotate` (counter-clockwise about the centre)."""
    cx, cy, a = w / 2, h / 2, math.radians(angle)
    xs, ys = [], []
    for x, y in ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])):
        dx, dy = x - cx, y - cy
        xs.append(cx + dx * math.cos(a) + dy * math.sin(a))
        ys.append(cy - dx * math.sin(a) + dy * math.cos(a))
    return (
        max(0, math.floor(min(xs))),
        max(0, math.floor(min(ys))),
        min(w, math.ceil(max(xs))),
        min(h, math.ceil(max(ys))),
    )
