"""Content fingerprints of the files a data config reads, for the data artifact's key.

A path in the config says where data is, not what it is: the key must change when the files do.
Hashing every byte of a 10M-record tree would take longer than the import, so a fingerprint is, per
file (sorted by relative path): its size, its mtime (ns), and for text/metadata and archive files a
sha256 of their first and last MiB (which covers a zip's index with the CRC of every member); image
files count by size and mtime only. A manifest counts as its own file plus each image it names. A
copy of a dataset with new mtimes gets a new key (a re-import, never a stale hit).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mnaft_core.data.config import (
    DataConfig,
    GettextSource,
    ManifestSource,
    Mit10mSource,
    Ocrmt30kSource,
    RenderedSource,
    Source,
    TableSource,
)
from mnaft_core.data.types import DataError

SAMPLE_BYTES = 1 << 20
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _sample_hash(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def file_fingerprint(path: Path) -> str:
    """size:mtime_ns[:sample sha256] of one file (no sample for image files)."""
    st = path.stat()
    out = f"{st.st_size}:{st.st_mtime_ns}"
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        out += ":" + _sample_hash(path, st.st_size)
    return out


def tree_fingerprint(path: Path) -> str:
    """sha256 over (relative path, file fingerprint) of every file under ``path`` (or of the file)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(file_fingerprint(path).encode())
        return h.hexdigest()
    if not path.is_dir():
        return "missing"
    files: list[str] = []
    for dirpath, _, names in os.walk(path):
        files += [os.path.join(dirpath, n) for n in names]
    for f in sorted(files):
        p = Path(f)
        h.update(f"{p.relative_to(path).as_posix()}\0{file_fingerprint(p)}\n".encode())
    return h.hexdigest()


def _manifest_fingerprint(src: ManifestSource) -> str:
    """The manifest file and (size, mtime) of every image file it names."""
    from mnaft_core.data.published import manifest_rows

    if not src.path.is_file():
        return "missing"
    h = hashlib.sha256(file_fingerprint(src.path).encode())
    for _, row in manifest_rows(src):
        rel = str(row.get(src.columns.image) or "")
        p = Path(rel) if Path(rel).is_absolute() else src.path.parent / rel
        try:
            st = p.stat()
            h.update(f"{rel}\0{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}\0missing\n".encode())
    return h.hexdigest()


def source_fingerprint(src: Source) -> str | None:
    """Fingerprint of the files a source reads; None for sources without files (CLDR, the built-in
    sources). Gettext catalogs depend on the languages too: data_fingerprints."""
    if isinstance(src, (TableSource, RenderedSource, Mit10mSource, Ocrmt30kSource)):
        return tree_fingerprint(src.path)
    if isinstance(src, ManifestSource):
        return _manifest_fingerprint(src)
    return None


def _gettext_fingerprint(src: GettextSource, languages: set[str]) -> str:
    """Every catalog the source reads, by path and content: the system's and the packages' catalogs
    change with what is installed (a Debian package adding its translations changes the split)."""
    from mnaft_core.data.sources import gettext_catalogs, gettext_languages

    h = hashlib.sha256()
    wanted = gettext_languages(src, languages)
    try:
        for _, _, path in sorted(gettext_catalogs(src, wanted), key=lambda c: str(c[2])):
            h.update(f"{path}\0{file_fingerprint(path)}\n".encode())
    except DataError as e:  # a missing package or folder: the build names it; the key says so
        return f"missing: {e}"
    return h.hexdigest()


def data_fingerprints(cfg: DataConfig) -> dict[str, str]:
    """``{"sources[i]": fingerprint}`` for every source that reads files: the user's, and the
    machine's gettext catalogs."""
    from mnaft_core.data.clean import UnknownLanguageError, normalize_lang

    languages = set()
    for tag in cfg.languages:
        try:
            languages.add(normalize_lang(tag))
        except UnknownLanguageError:  # the build names the direction at fault; the key keeps the tag
            languages.add(tag)
    out = {}
    for i, src in enumerate(cfg.sources):
        if isinstance(src, GettextSource):
            fp: str | None = _gettext_fingerprint(src, languages)
        else:
            fp = source_fingerprint(src)
        if fp is not None:
            out[f"sources[{i}]"] = fp
    return out
