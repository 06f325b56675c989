"""Text cleaning: BCP-47 tags, software-string debris (placeholders, markup, accelerators) and filters.

Gettext catalogs and UI strings are full of things that are not language: `%s`, `<b>`, `_File`. Left
in, an image would show `%(count)d` and the model would learn to copy format codes. Every dropped
pair is counted by reason so the dataset card can say what was thrown away and why.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.core import get_global

from mnaft_core.data.config import CleanConfig
from mnaft_core.data.types import DataError, TextPair

# Portugal's and Brazil's Portuguese are distinct catalogs everywhere (`pt` means pt-PT in gettext):
# never fold the region into the bare language for these.
_KEEP_REGION = {"pt"}
_MODIFIER_SCRIPTS = {"latin": "Latn", "cyrillic": "Cyrl"}


class UnknownLanguageError(DataError):
    """A language tag babel/CLDR does not know."""


@lru_cache(maxsize=4096)
def normalize_lang(tag: str) -> str:
    """Normalise a locale name or BCP-47 tag: `zh_CN`->`zh-Hans`, `ja_JP`->`ja`, `pt_BR`->`pt-BR`.

    The script is kept only where it differs from the language's likely script (always for Chinese,
    whose script is the thing that matters); the region only where it differs from the likely region.
    """
    raw = tag.strip()
    base, _, modifier = raw.partition("@")
    base = base.split(".")[0]  # de_DE.UTF-8
    try:
        loc = Locale.parse(base.replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError) as e:
        raise UnknownLanguageError(f"unknown language tag {tag!r} (not a CLDR locale)") from e
    if modifier and modifier not in _MODIFIER_SCRIPTS:
        raise UnknownLanguageError(f"unknown language tag {tag!r}: unsupported modifier @{modifier}")
    lang, script, region = loc.language, loc.script, loc.territory
    if modifier:
        script = _MODIFIER_SCRIPTS[modifier]
    likely: Mapping[str, str] = get_global("likely_subtags")

    def _subtags(key: str) -> list[str]:  # "zh_TW" -> ["zh", "Hant", "TW"]
        return [*(likely.get(key) or likely.get(lang, "")).split("_"), "", ""]

    if script is None:  # zh_TW -> Hant: the region decides the script
        script = _subtags(f"{lang}_{region}" if region else lang)[1] or None
    out = [lang]
    if script and (lang == "zh" or script != _subtags(lang)[1]):
        out.append(script)
    likely_region = _subtags(f"{lang}_{script}")[2]
    if region and (region != likely_region or lang in _KEEP_REGION) and not (lang == "zh" and script):
        out.append(region)
    return "-".join(out)


_PRINTF = re.compile(
    r"%(?:\([^)]*\))?(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?"
    r"(?:hh|h|ll|l|L|q|j|z|t|I64|I32)?[diouxXeEfFgGaAcspn]"
    r"|%\d+|%[A-Z_]+%"
)
_BRACES = re.compile(r"\{\{|\}\}|\{[^{}\s]*\}")
_DOLLAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z0-9_]+")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_CJK_ACCEL = re.compile(r"\s*[(\uff08][_&~][A-Za-z0-9][)\uff09]")
_AMP_ACCEL = re.compile(r"&(?![A-Za-z]+;|#\d+;|#x[0-9A-Fa-f]+;)(?=\w)")
_UNDERSCORE_ACCEL = re.compile(r"_(?=\w)")
_TRAILING = re.compile(r"(?:\s|:|\uff1a|\.\.\.|…|\.\.)+$")
_LEADING = re.compile(r"^[\s:\uff1a;,.、。…-]+")
_SPACE = re.compile(r"\s+")


def strip_placeholders(text: str) -> str:
    """Remove printf, brace and $-style format placeholders."""
    text = _PRINTF.sub(" ", text.replace("%%", "\1")).replace("\1", "%")
    text = _BRACES.sub(lambda m: m.group(0)[0] if m.group(0) in ("{{", "}}") else " ", text)
    return _DOLLAR.sub(" ", text)


def clean_text(text: str) -> str:
    """Strip placeholders, markup, entities, accelerator marks, trailing colons/ellipses and extra space."""
    text = text.replace("\\n", " ").replace("\\t", " ")
    text = strip_placeholders(text)
    text = _TAG.sub(" ", text)
    text = _CJK_ACCEL.sub("", text)
    text = text.replace("&&", "\0")
    if len(_AMP_ACCEL.findall(text)) == 1:
        text = _AMP_ACCEL.sub("", text)
    text = html.unescape(text.replace("\0", "&"))
    if text.count("_") == 1:  # a GTK mnemonic, also mid-word in translations ("Ö_ffnen")
        text = _UNDERSCORE_ACCEL.sub("", text)
    text = unicodedata.normalize("NFC", text)
    text = _SPACE.sub(" ", text).strip()
    return _LEADING.sub("", _TRAILING.sub("", text)).strip()


def has_letters(text: str) -> bool:
    """Whether any character is a letter (so the string carries language, not just symbols)."""
    return any(unicodedata.category(c).startswith("L") for c in text)


def word_count(text: str) -> int:
    """Whitespace words; CJK text without spaces counts as one word (max_chars bounds it)."""
    return len(text.split())


def hash_key(text: str) -> str:
    """The form of a text used for deduplication and split hashing: NFKC, casefolded, single-spaced."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def clean_pair(pair: TextPair, cfg: CleanConfig, drops: Counter[str]) -> TextPair | None:
    """Clean one directed pair; None (and a counted reason) if it should not be used."""
    if not pair.src_text.strip() or not pair.tgt_text.strip():
        drops["empty"] += 1
        return None
    if cfg.placeholders == "drop" and any(
        strip_placeholders(t) != t.replace("%%", "%") for t in (pair.src_text, pair.tgt_text)
    ):
        drops["has_placeholder"] += 1
        return None
    src, tgt = clean_text(pair.src_text), clean_text(pair.tgt_text)
    if not has_letters(src) or not has_letters(tgt):
        had_placeholder = (
            strip_placeholders(pair.src_text) != pair.src_text
            or strip_placeholders(pair.tgt_text) != pair.tgt_text
        )
        drops["placeholder_only" if had_placeholder else "no_letters"] += 1
        return None
    if hash_key(src) == hash_key(tgt):
        drops["untranslated"] += 1
        return None
    if len(src) < cfg.min_chars:
        drops["too_short"] += 1
        return None
    if len(src) > cfg.max_chars or len(tgt) > cfg.max_chars:
        drops["too_long"] += 1
        return None
    if word_count(src) > cfg.max_words:
        drops["too_many_words"] += 1
        return None
    return replace(pair, src_text=src, tgt_text=tgt)


def dedupe(pairs: list[TextPair], one_target_per_source: bool, drops: Counter[str]) -> list[TextPair]:
    """Keep the first of each (source, target) pair, or of each source when one target is wanted."""
    seen: set[tuple[str, ...]] = set()
    out: list[TextPair] = []
    for p in pairs:
        key = (
            (hash_key(p.src_text),) if one_target_per_source else (hash_key(p.src_text), hash_key(p.tgt_text))
        )
        if key in seen:
            drops["duplicate"] += 1
            continue
        seen.add(key)
        out.append(p)
    return out


def char_inventory(texts: Iterable[str], size: int) -> str:
    """The ``size`` most frequent non-space characters of the distinct ``texts`` (ties: code point order),
    as one sorted string: what a small reader is asked to learn instead of a whole CJK inventory."""
    counts = Counter(ch for t in set(texts) for ch in t if not ch.isspace())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "".join(sorted(ch for ch, _ in ranked[:size]))


def within_inventory(text: str, inventory: str) -> bool:
    """Whether every non-space character of ``text`` is in ``inventory``."""
    allowed = set(inventory)
    return all(ch.isspace() or ch in allowed for ch in text)
