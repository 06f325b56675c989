"""Cleaning rules: tags, placeholders, markup, accelerators, filters, dedupe."""

from __future__ import annotations

from collections import Counter

import pytest

from mnaft_core.data.clean import UnknownLanguageError, clean_pair, clean_text, dedupe, normalize_lang
from mnaft_core.data.config import CleanConfig
from mnaft_core.data.types import TextPair


@pytest.mark.parametrize(
    ("tag", "want"),
    [
        ("zh_CN", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("zh-Hans", "zh-Hans"),
        ("zh_TW", "zh-Hant"),
        ("zh_HK", "zh-Hant"),
        ("ja_JP", "ja"),
        ("de_DE", "de"),
        ("de", "de"),
        ("de_CH", "de-CH"),
        ("pt_BR", "pt-BR"),
        ("en_US", "en"),
        ("en_GB", "en-GB"),
        ("sr@latin", "sr-Latn"),
        ("de_DE.UTF-8", "de"),
    ],
)
def test_normalize_lang(tag: str, want: str) -> None:
    assert normalize_lang(tag) == want


@pytest.mark.parametrize("tag", ["xx", "klingon", "de@valencia", ""])
def test_unknown_language_names_the_tag(tag: str) -> None:
    with pytest.raises(UnknownLanguageError, match="unknown language tag"):
        normalize_lang(tag)


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("%s files", "files"),
        ("Delete %(count)d items", "Delete items"),
        ("{name} saved", "saved"),
        ("Page {0} of {1}", "Page of"),
        ("$1 moved", "moved"),
        ("100%% done", "100% done"),
        ("<b>Bold</b> text", "Bold text"),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("_File", "File"),
        ("&Open", "Open"),
        ("Ö_ffnen", "Öffnen"),
        ("打开(&O)...", "打开"),
        ("ファイル(_F)", "ファイル"),
        ("Name:", "Name"),
        ("Save As…", "Save As"),
        ("  many   spaces\n", "many spaces"),
        ("Rock && Roll", "Rock & Roll"),
    ],
)
def test_clean_text(raw: str, want: str) -> None:
    assert clean_text(raw) == want


def _pair(src: str, tgt: str) -> TextPair:
    return TextPair("en", "de", src, tgt, "test")


@pytest.mark.parametrize(
    ("src", "tgt", "reason"),
    [
        ("", "Öffnen", "empty"),
        ("Open", "  ", "empty"),
        ("%s: %d", "%s: %d", "placeholder_only"),
        ("---", "---", "no_letters"),
        ("OK", "ok", "untranslated"),
        ("GTK", "GTK", "untranslated"),
        ("a b c d e f g h i j", "x", "too_many_words"),
        ("x" * 60, "y", "too_long"),
    ],
)
def test_clean_pair_drops_by_reason(src: str, tgt: str, reason: str) -> None:
    drops: Counter[str] = Counter()
    assert clean_pair(_pair(src, tgt), CleanConfig(), drops) is None
    assert drops == Counter({reason: 1})


def test_clean_pair_keeps_and_cleans() -> None:
    drops: Counter[str] = Counter()
    out = clean_pair(_pair("_Open File...", "Datei ö_ffnen …"), CleanConfig(), drops)
    assert out is not None and (out.src_text, out.tgt_text) == ("Open File", "Datei öffnen") and not drops


def test_placeholders_drop_mode() -> None:
    drops: Counter[str] = Counter()
    assert clean_pair(_pair("%s files", "%s Dateien"), CleanConfig(placeholders="drop"), drops) is None
    assert drops == Counter({"has_placeholder": 1})
    assert (
        clean_pair(_pair("100%% done", "100%% fertig"), CleanConfig(placeholders="drop"), drops) is not None
    )


def test_dedupe() -> None:
    pairs = [_pair("Open", "Öffnen"), _pair("open", "Öffnen"), _pair("Open", "Aufmachen")]
    drops: Counter[str] = Counter()
    assert [p.tgt_text for p in dedupe(pairs, True, drops)] == ["Öffnen"] and drops["duplicate"] == 2
    assert len(dedupe(pairs, False, Counter())) == 2
