"""Drawing text into pictures: a font that has every glyph (CJK for zh/ja), wrapping, fitting to a box."""

from __future__ import annotations

from functools import lru_cache

from PIL import ImageDraw, ImageFont

from mnaft_core.data.fonts import FontFile, FontLibrary, NoFontError, detect_script

Font = ImageFont.FreeTypeFont


@lru_cache(maxsize=1)
def _library() -> FontLibrary:
    return FontLibrary.discover()


@lru_cache(maxsize=256)
def _face_for(text: str, lang: str | None) -> FontFile:
    lib = _library()
    script = detect_script(text, lang)
    try:
        return lib.for_text(text, script)[0] if script != "Zyyy" else lib.for_script("Latn")[0]
    except (NoFontError, IndexError):  # glyphs no font has: the widest-coverage Latin font draws boxes
        for script in ("Jpan", "Hans", "Latn"):
            faces = lib.for_script(script)
            if faces:
                return faces[0]
        raise


def font_for(text: str, lang: str | None, size: int) -> Font:
    """A font of ``size`` px whose character map covers ``text`` (a Noto CJK face for zh/ja)."""
    face = _face_for(text, lang)
    return ImageFont.truetype(str(face.path), size=max(1, int(size)), index=face.index)


def text_size(font: Font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def wrap(text: str, font: Font, width: int) -> list[str]:
    """Greedy line breaking at spaces; text without spaces (Chinese, Japanese) breaks between characters."""
    units = text.split(" ") if " " in text.strip() else list(text)
    sep = " " if " " in text.strip() else ""
    lines: list[str] = []
    line = ""
    for unit in units:
        trial = f"{line}{sep}{unit}" if line else unit
        if line and text_size(font, trial)[0] > width:
            lines.append(line)
            line = unit
        else:
            line = trial
    if line:
        lines.append(line)
    return lines or [""]


def fit_font(
    text: str, lang: str | None, width: int, height: int, max_lines: int = 3, min_size: int = 6
) -> tuple[Font, list[str]]:
    """The largest font (and line breaks) with which ``text`` fits ``width`` x ``height`` pixels.

    Tries one line first, then more lines up to ``max_lines``; below ``min_size`` px the smallest is
    returned even if it overflows (a box too small for its translation still gets the text).
    """
    best: tuple[Font, list[str]] | None = None
    lo, hi = min_size, max(min_size, int(height * 0.95))
    while lo <= hi:  # binary search on the size; more lines only when one does not fit
        size = (lo + hi) // 2
        font = font_for(text, lang, size)
        fitted = None
        for n in range(1, max_lines + 1):
            lines = [text] if n == 1 else wrap(text, font, width)
            if len(lines) > n:
                continue
            w = max(text_size(font, ln)[0] for ln in lines)
            h = line_height(font) * len(lines)
            if w <= width and h <= height:
                fitted = lines
                break
        if fitted is not None:
            best = (font, fitted)
            lo = size + 1
        else:
            hi = size - 1
    if best is None:
        font = font_for(text, lang, min_size)
        return font, wrap(text, font, width)
    return best


def line_height(font: Font) -> int:
    ascent, descent = font.getmetrics()
    return int(ascent + descent)


def draw_lines(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    lines: list[str],
    font: Font,
    fill: tuple[int, int, int],
    align: str = "center",
) -> None:
    """Lines centred vertically in ``box``; horizontally centred (or left-aligned)."""
    x0, y0, x1, y1 = box
    lh = line_height(font)
    y = y0 + (y1 - y0 - lh * len(lines)) / 2
    for ln in lines:
        w = draw.textlength(ln, font=font)
        x = x0 + ((x1 - x0 - w) / 2 if align == "center" else 2)
        draw.text((x, y), ln, font=font, fill=fill)
        y += lh


def font_face_css(text: str, family: str = "mnaft-embedded") -> str:
    """A CSS ``@font-face`` carrying a subset of a font (only the glyphs of ``text`` that are not
    Latin, Greek or Cyrillic), so an HTML page shows Chinese/Japanese/Korean without the reader having
    such a font installed. Empty when ``text`` needs none."""
    import base64
    import io

    from fontTools import subset

    from mnaft_core.data.fonts import char_script

    chars = "".join(sorted({c for c in text if char_script(c) not in (None, "Latn", "Grek", "Cyrl")}))
    if not chars:
        return ""
    face = _face_for(chars, None)
    options = subset.Options()
    options.layout_features = ["*"]
    options.font_number = face.index
    font = subset.load_font(str(face.path), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    buf = io.BytesIO()
    subset.save_font(font, buf, options)
    data = base64.b64encode(buf.getvalue()).decode()
    return f"@font-face{{font-family:'{family}';src:url(data:font/otf;base64,{data})}}"
