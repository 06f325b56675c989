"""Fonts per writing system (ISO 15924), verified against each font's character map.

A font that lacks a glyph draws tofu boxes, and an image of boxes teaches the model nothing; so a font
matches a text only if its cmap covers every character. Search order: `render.font_dirs`,
matplotlib's bundled DejaVu, the system font folders, then the pip font package (Noto Sans CJK).
"""

from __future__ import annotations

import importlib.util
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from fontTools.ttLib import TTFont

from mnaft_core.data.types import DataError

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
SYSTEM_FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
FONT_PACKAGES = ("noto_cjk_sans_jp_regular",)  # pip install noto-cjk-sans-jp-regular (OFL-1.1)
FONT_HINT = (
    "add a folder with a covering .ttf/.otf to render.font_dirs, `pip install noto-cjk-sans-jp-regular` "
    "for Chinese/Japanese/Korean, or install a system font package (e.g. apt-get install fonts-noto-core)"
)

# Characters a font must have to count as covering a script at all (not just a stray glyph or two).
SCRIPT_PROBES = {
    "Latn": "AaZzÄäßéñ",
    "Grek": "ΑαΩω",
    "Cyrl": "АаЯяЖж",
    "Hans": "的一是中国语设置这们",
    "Hant": "的一是中國語設定這們",
    "Jpan": "あいうアイウ日本語",
    "Kore": "한국어가나",
    "Arab": "العربية",
    "Hebr": "עברית",
    "Deva": "हिन्दी",
    "Thai": "ภาษาไทย",
}
_NAME_SCRIPTS = (
    ("LATIN", "Latn"),
    ("GREEK", "Grek"),
    ("CYRILLIC", "Cyrl"),
    ("ARABIC", "Arab"),
    ("HEBREW", "Hebr"),
    ("DEVANAGARI", "Deva"),
    ("THAI", "Thai"),
    ("HIRAGANA", "Hira"),
    ("KATAKANA", "Kana"),
    ("HANGUL", "Hang"),
    ("CJK UNIFIED IDEOGRAPH", "Hani"),
    ("CJK COMPATIBILITY IDEOGRAPH", "Hani"),
)


# Monospace looks like code, not UI text; a last-resort font draws a placeholder for every character.
_SKIP_NAMES = ("Mono", "LastResort", "ExtraLight")


class NoFontError(DataError):
    """No available font covers a text."""


def char_script(ch: str) -> str | None:
    """ISO 15924 code of a letter, or None for digits, punctuation and symbols (script-neutral)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    for prefix, script in _NAME_SCRIPTS:
        if name.startswith(prefix):
            return script
    return "Zyyy"


def detect_script(text: str, lang: str | None = None) -> str:
    """The text's script: Jpan for any kana, Kore for Hangul, Hans/Hant for Han by language, else the
    most frequent letter script; Zyyy if the text has no letters."""
    counts: dict[str, int] = {}
    for ch in text:
        s = char_script(ch)
        if s:
            counts[s] = counts.get(s, 0) + 1
    if not counts:
        return "Zyyy"
    # Any CJK character decides: CJK fonts also cover Latin, Latin fonts never cover CJK.
    if "Hira" in counts or "Kana" in counts or (lang == "ja" and "Hani" in counts):
        return "Jpan"
    if "Hang" in counts:
        return "Kore"
    if "Hani" in counts:
        return "Hant" if lang and "Hant" in lang else "Hans"
    return max(sorted(counts), key=lambda s: counts[s])


@dataclass(frozen=True)
class FontFile:
    """One face of a font file (index > 0 inside .ttc collections)."""

    path: Path
    index: int = 0

    @property
    def name(self) -> str:
        return self.path.name if self.index == 0 else f"{self.path.name}#{self.index}"


@lru_cache(maxsize=512)
def font_cmap(font: FontFile) -> frozenset[int]:
    """Code points the face maps to a glyph (empty if the file cannot be parsed)."""
    try:
        tt = TTFont(str(font.path), fontNumber=font.index, lazy=True)
        cmap = tt.getBestCmap() or {}
        tt.close()
    except Exception:  # a broken font file is simply not a candidate
        return frozenset()
    return frozenset(cmap)


def _files_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())


def matplotlib_font_dir() -> list[Path]:
    """matplotlib's bundled DejaVu fonts (always there: matplotlib is a dependency)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf"]


def package_font_dirs() -> list[Path]:
    """Folders of installed pip font packages."""
    out = []
    for pkg in FONT_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            out += [Path(p) for p in spec.submodule_search_locations]
    return out


@dataclass
class FontLibrary:
    """The fonts available to rendering, with per-script candidate lists found lazily."""

    dirs: list[Path]
    max_per_script: int = 10
    _by_script: dict[str, list[FontFile]] = field(default_factory=dict)
    _files: list[FontFile] | None = None

    @classmethod
    def discover(cls, extra_dirs: list[Path] | tuple[Path, ...] = ()) -> FontLibrary:
        """Search `extra_dirs` first, then matplotlib, the system folders and font packages."""
        return cls(dirs=[*extra_dirs, *matplotlib_font_dir(), *SYSTEM_FONT_DIRS, *package_font_dirs()])

    def files(self) -> list[FontFile]:
        """Every face found, in search order, duplicates by file name dropped."""
        if self._files is None:
            seen: set[str] = set()
            self._files = []
            for d in self.dirs:
                for p in _files_in(d):
                    if p.name in seen or any(w in p.name for w in _SKIP_NAMES):
                        continue
                    seen.add(p.name)
                    self._files.append(FontFile(p))
        return self._files

    def for_script(self, script: str) -> list[FontFile]:
        """Up to max_per_script faces covering the script's probe characters."""
        if script not in self._by_script:
            probe = {ord(c) for c in SCRIPT_PROBES.get(script, "")}
            found = []
            for f in self.files():
                cmap = font_cmap(f)
                if cmap and probe <= cmap:
                    found.append(f)
                    if len(found) >= self.max_per_script:
                        break
            self._by_script[script] = found
        return self._by_script[script]

    def for_text(self, text: str, script: str) -> list[FontFile]:
        """Faces covering the script and every non-space character of `text`; NoFontError if none."""
        need = {ord(c) for c in text if not c.isspace()}
        fonts = [f for f in self.for_script(script) if need <= font_cmap(f)]
        if not fonts:
            raise NoFontError(f"no font covers script {script} for text {text!r}: {FONT_HINT}")
        return fonts
