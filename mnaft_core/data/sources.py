"""One small reader per source kind; each yields `TextPair`s in the source's natural orientation.

Readers yield raw language tags and raw text; the builder normalises tags, orients pairs into the
configured directions and cleans the text, so every reader stays a plain file parser.
"""

from __future__ import annotations

import importlib.util
import itertools
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from babel import Locale
from babel.messages.pofile import read_po

from mnaft_core.data.clean import UnknownLanguageError, normalize_lang
from mnaft_core.data.config import (
    CldrSource,
    GettextSource,
    ManifestSource,
    Mit10mSource,
    Ocrmt30kSource,
    RenderedSource,
    Source,
    TableSource,
)
from mnaft_core.data.images import ImageReader
from mnaft_core.data.published import read_manifest, read_mit10m, read_ocrmt30k
from mnaft_core.data.types import BadInput, DataError, TextPair

SYSTEM_LOCALE_DIRS = (
    Path("/usr/share/locale"),
    Path("/usr/local/share/locale"),
    Path("/usr/share/locale-langpack"),
)
LangPairs = set[tuple[str, str]]  # normalised (src, tgt) pairs the build needs, either orientation


# --- table ----------------------------------------------------------------------------------------


def read_table(src: TableSource) -> Iterator[TextPair]:
    """Rows of a TSV/JSONL/Parquet file with the configured column names."""
    fmt = src.format if src.format != "auto" else src.path.suffix.lower().lstrip(".")
    try:
        if fmt in ("tsv", "tab"):
            df = pl.read_csv(src.path, separator="\t", quote_char=None, infer_schema=False)
        elif fmt in ("jsonl", "ndjson"):
            df = pl.read_ndjson(src.path)
        elif fmt == "parquet":
            df = pl.read_parquet(src.path)
        else:
            raise DataError(f"table source {src.path}: unknown format {fmt!r} (use tsv, jsonl or parquet)")
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(f"table source {src.path}: cannot read ({e})") from e
    cols = src.columns
    for field, col in (
        ("src_text", cols.src_text),
        ("tgt_text", cols.tgt_text),
        ("src_lang", cols.src_lang),
        ("tgt_lang", cols.tgt_lang),
    ):
        if col is not None and col not in df.columns:
            raise DataError(
                f"table source {src.path}: column {col!r} (columns.{field}) not found; has {df.columns}"
            )
    for side, col, fixed in (("src", cols.src_lang, src.src_lang), ("tgt", cols.tgt_lang, src.tgt_lang)):
        if col is None and fixed is None:
            raise DataError(f"table source {src.path}: set {side}_lang or columns.{side}_lang")
    first = 2 if fmt in ("tsv", "tab") else 1  # a TSV's line 1 is its header
    for k, row in enumerate(df.iter_rows(named=True)):
        yield TextPair(
            src_lang=str(row[cols.src_lang] if cols.src_lang else src.src_lang),
            tgt_lang=str(row[cols.tgt_lang] if cols.tgt_lang else src.tgt_lang),
            src_text=_str(row[cols.src_text]),
            tgt_text=_str(row[cols.tgt_text]),
            origin="table",
            where=f"{src.path}:{k + first}" if fmt != "parquet" else f"{src.path} row {k + 1}",
        )


def _str(v: Any) -> str:
    return "" if v is None else str(v)


# --- gettext --------------------------------------------------------------------------------------


def parse_mo(data: bytes, drops: Counter[str] | None = None) -> Iterator[tuple[str | None, str, str]]:
    """(context, msgid, msgstr) of a GNU .mo file; plural entries give their first form.

    A small parser rather than babel's: babel aborts a whole catalog on one badly encoded string.
    """
    if len(data) < 20:
        raise DataError("not a .mo file (too short)")
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic == 0x950412DE else ">" if magic == 0xDE120495 else None
    if order is None:
        raise DataError("not a .mo file (bad magic number)")
    _, n, orig_off, trans_off = struct.unpack(order + "4I", data[4:20])
    charset = "utf-8"
    for i in range(n):
        olen, opos = struct.unpack(order + "2I", data[orig_off + 8 * i : orig_off + 8 * i + 8])
        tlen, tpos = struct.unpack(order + "2I", data[trans_off + 8 * i : trans_off + 8 * i + 8])
        msgid_b, msgstr_b = data[opos : opos + olen], data[tpos : tpos + tlen]
        if olen == 0:  # header: find the charset
            for line in msgstr_b.decode("ascii", "replace").splitlines():
                if line.lower().startswith("content-type:") and "charset=" in line:
                    charset = line.split("charset=")[1].strip() or "utf-8"
            continue
        try:
            msgid, msgstr = msgid_b.decode(charset), msgstr_b.decode(charset)
        except (UnicodeDecodeError, LookupError):
            if drops is not None:
                drops["bad_encoding"] += 1
            continue
        ctx, _, msgid = msgid.rpartition("\x04")
        yield ctx or None, msgid.split("\x00")[0], msgstr.split("\x00")[0]


def _read_catalog(path: Path, drops: Counter[str]) -> Iterator[tuple[str | None, str, str]]:
    if path.suffix == ".mo":
        yield from parse_mo(path.read_bytes(), drops)
        return
    with path.open("rb") as f:
        catalog = read_po(f, abort_invalid=False)
    for m in catalog:
        if not m.id:
            continue
        if m.fuzzy:
            drops["fuzzy"] += 1
            continue
        msgid = m.id[0] if isinstance(m.id, (tuple, list)) else m.id
        msgstr = m.string[0] if isinstance(m.string, (tuple, list)) else m.string
        yield m.context, str(msgid), str(msgstr or "")


def find_catalogs(src: GettextSource) -> Iterator[tuple[str, str, Path]]:
    """(locale name, domain, catalog path) for every .mo/.po of the configured location."""
    roots: list[Path]
    if src.location == "system":
        roots = [d for d in SYSTEM_LOCALE_DIRS if d.is_dir()]
    elif src.location == "packages":
        roots = []
        for pkg in src.packages:
            spec = importlib.util.find_spec(pkg)
            if spec is None or not spec.submodule_search_locations:
                raise DataError(
                    f"gettext source: package {pkg!r} is not installed (packages: {src.packages})"
                )
            for loc in spec.submodule_search_locations:
                roots += [p for p in Path(loc).rglob("locale") if p.is_dir()]
    else:
        assert src.path is not None
        if not src.path.is_dir():
            raise DataError(f"gettext source: directory {src.path} does not exist")
        roots = [src.path]
    for root in roots:
        for path in sorted(itertools.chain(root.rglob("*.mo"), root.rglob("*.po"))):
            if path.parent.name == "LC_MESSAGES":
                yield path.parent.parent.name, path.stem, path
            else:  # a po/ folder: de.po, zh_CN.po; the folder names the domain
                yield path.stem, path.parent.name, path


def gettext_catalogs(src: GettextSource, wanted: set[str]) -> Iterator[tuple[str, str, Path]]:
    """(language, domain, path) of the catalogs a gettext source reads for the ``wanted`` languages:
    what read_gettext reads and what the data key fingerprints, so the two cannot disagree."""
    for dirname, domain, path in find_catalogs(src):
        try:
            lang = normalize_lang(dirname)
        except UnknownLanguageError:
            continue
        if lang in wanted and lang != "en":
            yield lang, domain, path


def gettext_languages(src: GettextSource, languages: Iterable[str]) -> set[str]:
    """The source's own languages where it names some, else the directions' ``languages``."""
    return {normalize_lang(x) for x in src.languages} if src.languages else set(languages)


def read_gettext(src: GettextSource, needed: LangPairs, drops: Counter[str]) -> Iterator[TextPair]:
    """English msgid -> msgstr pairs, plus X<->Y pairs pivoted through the same msgid of one domain."""
    wanted = gettext_languages(src, (x for p in needed for x in p))
    entries: dict[tuple[str, str | None, str], dict[str, str]] = {}
    for lang, domain, path in gettext_catalogs(src, wanted):
        try:
            for ctx, msgid, msgstr in _read_catalog(path, drops):
                if msgstr:
                    entries.setdefault((domain, ctx, msgid), {}).setdefault(lang, msgstr)
        except (OSError, ValueError, struct.error):  # one broken catalog must not stop the build
            drops["bad_catalog"] += 1
    for a, b in sorted(needed):
        if not (a in wanted and b in wanted) and "en" not in (a, b):
            continue
        count = 0
        for (_domain, _ctx, msgid), tr in entries.items():
            texts = {**tr, "en": msgid}
            if a in texts and b in texts:
                yield TextPair(a, b, texts[a], texts[b], "gettext")
                count += 1
                if count >= src.max_pairs_per_language:
                    break


# --- CLDR -----------------------------------------------------------------------------------------


def _cldr_names(loc: Locale, category: str) -> dict[str, str]:
    if category in ("territories", "languages", "currencies"):
        return {k: str(v) for k, v in getattr(loc, category).items()}
    if category == "units":
        out = {}
        for k, v in loc.unit_display_names.items():
            for width in ("long", "short"):
                if width in v:
                    out[k] = str(v[width])
                    break
        return out
    table = loc.months if category == "months" else loc.days
    return {
        f"{ctx}/{width}/{k}": str(v)
        for ctx in ("format", "stand-alone")
        for width in ("wide", "abbreviated")
        for k, v in table[ctx][width].items()
    }


def read_cldr(src: CldrSource, needed: LangPairs) -> Iterator[TextPair]:
    """Display names of the same CLDR key in two locales (e.g. territory DE: Germany / Deutschland)."""
    for a, b in sorted(needed):
        la, lb = Locale.parse(a.replace("-", "_")), Locale.parse(b.replace("-", "_"))
        for cat in src.categories:
            na, nb = _cldr_names(la, cat), _cldr_names(lb, cat)
            for key in sorted(na.keys() & nb.keys()):
                yield TextPair(a, b, na[key], nb[key], "cldr")


# --- rendered -------------------------------------------------------------------------------------


def _rendered_tables(path: Path) -> Iterator[pa.Table]:
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".parquet", ".arrow"))
    else:
        raise DataError(f"rendered source {path}: no such file or folder")
    if not files:
        raise DataError(f"rendered source {path}: no .parquet or .arrow files inside")
    for f in files:
        try:
            if f.suffix == ".parquet":
                yield pq.read_table(f)
            else:  # datasets save_to_disk writes Arrow IPC streams
                with pa.memory_map(str(f)) as mm:
                    try:
                        yield pa.ipc.open_stream(mm).read_all()
                    except pa.ArrowInvalid:
                        mm.seek(0)
                        yield pa.ipc.open_file(mm).read_all()
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"rendered source {f}: cannot read ({e})") from e


def _image_bytes(cell: Any, base: Path) -> bytes:
    """Encoded image bytes of a cell: raw bytes or a datasets Image struct {bytes, path}; b'' if none."""
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        p = cell.get("path")
        for cand in (Path(p), base / p) if p else ():
            if cand.is_file():
                return cand.read_bytes()
    return b""


def read_rendered(src: RenderedSource) -> Iterator[TextPair]:
    """Rows of an image-translation dataset; each carries its image bytes."""
    cols = src.columns
    base = src.path if src.path.is_dir() else src.path.parent
    for t, table in enumerate(_rendered_tables(src.path)):
        for field, col in (
            ("image", cols.image),
            ("src_text", cols.src_text),
            ("tgt_text", cols.tgt_text),
            ("src_lang", cols.src_lang if src.src_lang is None else None),
            ("tgt_lang", cols.tgt_lang if src.tgt_lang is None else None),
        ):
            if col is not None and col not in table.column_names:
                raise DataError(
                    f"rendered source {src.path}: column {col!r} (columns.{field}) not found; "
                    f"has {table.column_names}"
                )
        if (src.src_lang is None and cols.src_lang is None) or (
            src.tgt_lang is None and cols.tgt_lang is None
        ):
            raise DataError(f"rendered source {src.path}: set src_lang/tgt_lang or their columns")
        for k, row in enumerate(table.to_pylist()):
            yield TextPair(
                where=f"{src.path} table {t} row {k + 1}",
                src_lang=src.src_lang or _str(row[cols.src_lang or ""]),
                tgt_lang=src.tgt_lang or _str(row[cols.tgt_lang or ""]),
                src_text=_str(row[cols.src_text]),
                tgt_text=_str(row[cols.tgt_text]),
                origin="rendered",
                image=_image_bytes(row[cols.image], base),
            )


def read_source(
    src: Source,
    needed: LangPairs,
    drops: Counter[str],
    bad: BadInput | None = None,
    reader: ImageReader | None = None,
) -> Iterable[TextPair]:
    """Dispatch to the reader of the source's kind (``needed`` as normalised pairs)."""
    bad = bad if bad is not None else BadInput()
    reader = reader if reader is not None else ImageReader()
    if isinstance(src, TableSource):
        return read_table(src)
    if isinstance(src, GettextSource):
        return read_gettext(src, needed, drops)
    if isinstance(src, CldrSource):
        return read_cldr(src, needed)
    if isinstance(src, Mit10mSource):
        return read_mit10m(src, needed, bad, reader)
    if isinstance(src, Ocrmt30kSource):
        return read_ocrmt30k(src, bad, reader)
    if isinstance(src, ManifestSource):
        return read_manifest(src, bad, reader)
    return read_rendered(src)


__all__ = [
    "find_catalogs",
    "parse_mo",
    "read_cldr",
    "read_gettext",
    "read_rendered",
    "read_source",
    "read_table",
]
