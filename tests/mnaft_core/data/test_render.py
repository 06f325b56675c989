"""Fonts per script and deterministic rendering."""

from __future__ import annotations

import numpy as np
import pytest

from mnaft_core.data.config import RenderConfig
from mnaft_core.data.fonts import FontLibrary, NoFontError, detect_script, font_cmap
from mnaft_core.data.render import TooLongToRenderError, render_text

CFG = RenderConfig()


@pytest.fixture(scope="module")
def fonts() -> FontLibrary:
    return FontLibrary.discover()


@pytest.mark.parametrize(
    ("text", "lang", "script"),
    [
        ("Öffnen", "de", "Latn"),
        ("打开文件", "zh-Hans", "Hans"),
        ("開啟檔案", "zh-Hant", "Hant"),
        ("ファイルを開く", "ja", "Jpan"),
        ("日本", "ja", "Jpan"),
        ("한국어", "ko", "Kore"),
        ("Привет", "ru", "Cyrl"),
        ("fsmonitor 已禁用", "zh-Hans", "Hans"),
        ("123 ...", "en", "Zyyy"),
    ],
)
def test_detect_script(text: str, lang: str, script: str) -> None:
    assert detect_script(text, lang) == script


@pytest.mark.parametrize(
    ("text", "script"), [("Datei öffnen", "Latn"), ("打开文件", "Hans"), ("ファイルを開く", "Jpan")]
)
def test_demo_scripts_have_covering_fonts(fonts: FontLibrary, text: str, script: str) -> None:
    found = fonts.for_text(text, script)
    assert found and all({ord(c) for c in text if not c.isspace()} <= font_cmap(f) for f in found)


def test_no_font_error_names_script_text_and_fix(fonts: FontLibrary) -> None:
    with pytest.raises(NoFontError, match=r"Zyyy.*𐀀𐀁.*font_dirs"):
        fonts.for_text("𐀀𐀁", "Zyyy")  # Linear B: no bundled font has it


@pytest.mark.parametrize(("text", "script"), [("Save file", "Latn"), ("保存文件", "Hans")])
def test_render_is_deterministic(fonts: FontLibrary, text: str, script: str) -> None:
    a = render_text(text, script, np.random.default_rng(7), CFG, fonts)
    b = render_text(text, script, np.random.default_rng(7), CFG, fonts)
    c = render_text(text, script, np.random.default_rng(8), CFG, fonts)
    assert a.png() == b.png() and a.style == b.style
    assert a.png() != c.png()
    assert a.image.mode == "RGB" and a.image.height == CFG.height and a.image.width <= CFG.max_width
    assert a.image.width % 16 == 0 and len(a.boxes) == a.style["lines"]
    for x0, y0, x1, y1 in a.boxes:
        assert 0 <= x0 < x1 <= a.image.width and 0 <= y0 < y1 <= a.image.height


def test_render_wraps_then_drops(fonts: FontLibrary) -> None:
    cfg = RenderConfig(height=48, max_width=128, max_lines=2, font_size=(14, 14), rotation_deg=0.0)
    r = render_text("Federal Republic of Germany", "Latn", np.random.default_rng(0), cfg, fonts)
    assert r.style["lines"] == 2 and len(r.boxes) == 2
    with pytest.raises(TooLongToRenderError, match="does not fit"):
        render_text("word " * 40, "Latn", np.random.default_rng(0), cfg, fonts)


def test_cjk_wraps_per_character(fonts: FontLibrary) -> None:
    cfg = RenderConfig(
        height=64, max_width=64, max_lines=3, font_size=(16, 16), min_font_size=16, padding=(2, 2)
    )
    r = render_text("保存所有打开的文件", "Hans", np.random.default_rng(0), cfg, fonts)
    assert r.style["lines"] >= 2
