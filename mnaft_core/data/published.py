"""Readers of published image-translation datasets, each in the layout its authors publish it in.

They stream: one record at a time, the image named by an `ImageRef` and read only when the record is
written, so a 10M-record dataset never sits in memory. Every record carries `where` (file:line), and
every bad record goes to the `BadInput` policy (stop at the first, or skip and count by reason).

- MIT-10M: huggingface.co/datasets/liboaccn/MIT-10M (Li, Zhu, Wen, COLING 2025): `{train,test}/<LANG>.jsonl`
  with the fields a public script reading the published files takes from each record (`id`, `img`,
  `src_lang`, `tgt_lang`, `src_text`, `tgt_text`, `split`, `cate_id`, `cate_name`, `difficulty`,
  `box_cnt`; checked 2026-12-03, the dataset's own files being gated); images in per-language
  archives named by the first component of `img`. No image-size field: see `Mit10mSource`.
- OCRMT30K v2.0: github.com/DeepLearnXMU/mc_tit, ocrmt30k_data/README.md and its preprocessing code
  (raw_data lines are `x1,y1,...,xn,yn,text`, read as UTF-8 or GBK as that code does).
- manifest: any dataset as a CSV/TSV/JSONL/Parquet table of image paths and texts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mnaft_core.data.clean import UnknownLanguageError, normalize_lang
from mnaft_core.data.config import Direction, ManifestSource, Mit10mSource, Ocrmt30kSource
from mnaft_core.data.images import ImageReader
from mnaft_core.data.split import unit_hash
from mnaft_core.data.types import BadInput, DataError, ImageRef, TextPair

SPLIT_NAMES = {
    "train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val", "dev": "val"
}  # fmt: skip
Resolver = Callable[[str], ImageRef | None]


def _norm_pairs(directions: list[Direction]) -> set[tuple[str, str]]:
    out = set()
    for i, d in enumerate(directions):
        try:
            out.add((normalize_lang(d.src), normalize_lang(d.tgt)))
        except UnknownLanguageError as e:
            raise DataError(f"directions[{i}] ({d.src}->{d.tgt}): {e}") from e
    return out


def _opt(v: Any) -> str | None:
    return None if v is None else str(v)


# --- MIT-10M --------------------------------------------------------------------------------------


def _mit_resolver(root: Path, archive: str, reader: ImageReader, max_side: int | None) -> Resolver | None:
    """How images of one archive (`de` in `de/123.jpg`) are found: a folder, else `<archive>.zip`."""
    for base in (root, root / "images"):
        if (base / archive).is_dir():

            def in_folder(img: str, base: Path = base) -> ImageRef:
                return ImageRef(str(base / img), max_side=max_side)

            return in_folder
    for base in (root, root / "images"):
        zpath = base / f"{archive}.zip"
        if zpath.is_file():
            try:
                prefixed = reader.has_prefix(str(zpath), f"{archive}/")
            except OSError:
                return None

            def ref(img: str, zpath: Path = zpath, prefixed: bool = prefixed) -> ImageRef:
                return ImageRef(str(zpath), img if prefixed else img.split("/", 1)[-1], max_side=max_side)

            return ref
    return None


def mit10m_files(src: Mit10mSource) -> list[tuple[str, Path]]:
    """(published split, JSONL file) in order: train/ then test/ (then any other split folder)."""
    if not src.path.is_dir():
        raise DataError(f"mit10m source {src.path}: no such folder")
    folders = sorted(
        (p for p in src.path.iterdir() if p.is_dir() and p.name.lower() in SPLIT_NAMES),
        key=lambda p: (["train", "val", "test"].index(SPLIT_NAMES[p.name.lower()]), p.name),
    )
    files = [(SPLIT_NAMES[f.name.lower()], j) for f in folders for j in sorted(f.glob("*.jsonl"))]
    if not files:
        raise DataError(
            f"mit10m source {src.path}: no train/*.jsonl or test/*.jsonl (the layout MIT-10M is published in)"
        )
    return files


def read_mit10m(
    src: Mit10mSource, needed: set[tuple[str, str]], bad: BadInput, reader: ImageReader
) -> Iterator[TextPair]:
    """MIT-10M records of the wanted directions, filtered by language, size, category and difficulty."""
    want_dirs = _norm_pairs(src.directions) if src.directions else None
    try:
        want_langs = {normalize_lang(x) for x in src.languages} if src.languages else None
    except UnknownLanguageError as e:
        raise DataError(f"mit10m source {src.path}: languages: {e}") from e
    needed_src = {p[0] for p in (want_dirs or needed)} | {p[1] for p in (want_dirs or needed)}
    sizes, cats, diffs = set(src.sizes), set(src.categories), set(src.difficulties)
    resolvers: dict[str, Resolver | None] = {}
    for split, path in mit10m_files(src):
        try:  # the file is named by its source language (ZH.jsonl): skip files no direction needs
            if normalize_lang(path.stem) not in needed_src:
                continue
        except UnknownLanguageError:
            pass
        n = 0
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                n += 1
                where = f"{path}:{lineno}"
                try:
                    rec = json.loads(line)
                    img, sl, tl = str(rec["img"]), str(rec["src_lang"]), str(rec["tgt_lang"])
                    s_text, t_text = str(rec["src_text"]), str(rec["tgt_text"])
                except (ValueError, KeyError, TypeError) as e:
                    bad("bad_record", where, f"not a MIT-10M record ({type(e).__name__}: {e})")
                    continue
                try:
                    a, b = normalize_lang(sl), normalize_lang(tl)
                except UnknownLanguageError as e:
                    bad("unknown_language", where, str(e))
                    continue
                if (want_dirs is not None and (a, b) not in want_dirs) or not {(a, b), (b, a)} & needed:
                    continue
                if want_langs is not None and not {a, b} <= want_langs:
                    continue
                if sizes and src.size_field is not None:
                    if src.size_field not in rec:
                        raise DataError(
                            f"{where}: record has no field {src.size_field!r} to filter `sizes` on "
                            f"(fields: {sorted(rec)}); set size_field"
                        )
                    if str(rec[src.size_field]) not in sizes:
                        continue
                if cats and str(rec.get("cate_name")) not in cats and str(rec.get("cate_id")) not in cats:
                    continue
                if diffs and str(rec.get("difficulty")) not in diffs:
                    continue
                published = SPLIT_NAMES.get(str(rec.get("split", split)).lower())
                if published is None:
                    bad("unknown_split", where, f"unknown split {rec.get('split')!r}")
                    continue
                if published == "train" and unit_hash("mit10m-val", s_text) < src.val_fraction:
                    published = "val"
                archive = img.split("/", 1)[0]
                if archive not in resolvers:
                    resolvers[archive] = _mit_resolver(src.path, archive, reader, src.max_side)
                resolve = resolvers[archive]
                ref = resolve(img) if resolve is not None else None
                if ref is None or not reader.exists(ref):
                    bad(
                        "missing_image",
                        where,
                        f"image {img!r} not found"
                        + (f" ({ref})" if ref else f" (no folder {archive}/ nor archive {archive}.zip)"),
                    )
                    continue
                yield TextPair(
                    sl, tl, s_text, t_text, "mit10m", image_ref=ref, split=published, where=where,
                    extra=(
                        ("record_id", _opt(rec.get("id"))), ("image_file", img),
                        ("category", _opt(rec.get("cate_name"))), ("category_id", _opt(rec.get("cate_id"))),
                        ("difficulty", _opt(rec.get("difficulty"))), ("box_count", _opt(rec.get("box_cnt"))),
                    ) + ((("size", _opt(rec.get(src.size_field))),) if src.size_field is not None else ()),
                )  # fmt: skip
        if n == 0:
            bad("empty_split", str(path), f"split {split!r}: the file has no records")


# --- OCRMT30K -------------------------------------------------------------------------------------

OCRMT_SPLITS = (("train", "train"), ("valid", "val"), ("test", "test"))


def _ocrmt_file(root: Path, name: str) -> Path:
    """A line file in before_tok_bpe/ (image lists also in after_tok_bpe/: the repository keeps
    image_test.txt only there, and image names are not tokenised)."""
    pre = root / "after_proprecess"
    for cand in (pre / "before_tok_bpe" / name, pre / "after_tok_bpe" / name):
        if cand.is_file():
            return cand
    raise DataError(
        f"ocrmt30k source {root}: {name} not found in after_proprecess/before_tok_bpe/ "
        "(the OCRMT30K v2.0 layout: whole_image_v2/, after_proprecess/before_tok_bpe/, raw_data/)"
    )


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e


def parse_raw_boxes(path: Path) -> list[tuple[tuple[int, int, int, int], str]]:
    """(axis-aligned box, text) per line of an OCRMT30K raw_data file: `x1,y1,...,xn,yn,text`."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("gbk", errors="replace")
    out = []
    for line in text.splitlines():
        fields = line.strip().split(",")
        k = 0
        while k < len(fields) and fields[k].strip().lstrip("-").isdigit():
            k += 1
        coords = [int(x) for x in fields[: k - k % 2]]
        if len(coords) < 4:
            continue
        xs, ys = coords[0::2], coords[1::2]
        label = ",".join(fields[k:]).strip()
        if label and label != "###":  # ICDAR's "don't care" mark
            out.append(((min(xs), min(ys), max(xs), max(ys)), label))
    return out


def read_ocrmt30k(src: Ocrmt30kSource, bad: BadInput, reader: ImageReader) -> Iterator[TextPair]:
    """One sample per zh text line (cropped to its box), or per image with its lines in order."""
    root = src.path
    if not (root / "whole_image_v2").is_dir():
        raise DataError(f"ocrmt30k source {root}: no whole_image_v2/ folder (put the images there)")
    for published, split in OCRMT_SPLITS:
        files = [_ocrmt_file(root, f"{kind}_{published}.txt") for kind in ("image", "ocr_zh", "ocr_en")]
        cols = [_lines(f) for f in files]
        lengths = [len(c) for c in cols]
        if len(set(lengths)) > 1:
            bad(
                "misaligned_lines",
                str(files[0].parent),
                "line files of different lengths: "
                + ", ".join(f"{f.name} {n} lines" for f, n in zip(files, lengths, strict=True))
                + f"; split {published!r} cannot be aligned",
            )
            continue
        if lengths[0] == 0:
            bad("empty_split", str(files[0]), f"split {published!r} has no lines")
            continue
        i = 0
        while i < lengths[0]:  # a run of consecutive lines of one image
            j = i
            name = cols[0][i].strip()
            while j < lengths[0] and cols[0][j].strip() == name:
                j += 1
            yield from _ocrmt_image(src, reader, bad, files, cols, name, i, j, split)
            i = j


def _ocrmt_image(
    src: Ocrmt30kSource,
    reader: ImageReader,
    bad: BadInput,
    files: list[Path],
    cols: list[list[str]],
    name: str,
    i: int,
    j: int,
    split: str,
) -> Iterator[TextPair]:
    where = f"{files[0]}:{i + 1}"
    ref = ImageRef(str(src.path / "whole_image_v2" / name), max_side=src.max_side)
    if not name or not reader.exists(ref):
        bad("missing_image", where, f"image {name!r} not in {src.path / 'whole_image_v2'}")
        return
    zh = [cols[1][k].strip() for k in range(i, j)]
    en = [cols[2][k].strip() for k in range(i, j)]
    boxes: list[tuple[int, int, int, int]] | None = None
    raw = src.path / "raw_data" / f"{Path(name).stem}.txt"
    if src.boxes == "auto" and raw.is_file():
        free = parse_raw_boxes(raw)
        boxes = []
        for text in zh:  # each line takes the first unused box with its text
            k = next((k for k, (_, t) in enumerate(free) if t.strip() == text), None)
            if k is None:
                boxes = None
                break
            boxes.append(free.pop(k)[0])
    if boxes is not None:
        for k, (a, b, box) in enumerate(zip(zh, en, boxes, strict=True)):
            line_ref = ImageRef(ref.path, box=box, max_side=src.max_side)
            yield TextPair(
                "zh", "en", a, b, "ocrmt30k", image_ref=line_ref, split=split,
                where=f"{files[0]}:{i + k + 1}", extra=(("image_file", name), ("line", str(i + k + 1))),
            )  # fmt: skip
    else:
        yield TextPair(
            "zh", "en", "\n".join(zh), "\n".join(en), "ocrmt30k", image_ref=ref, split=split, where=where,
            extra=(("image_file", name), ("line", f"{i + 1}-{j}")),
        )  # fmt: skip


# --- manifest -------------------------------------------------------------------------------------


def manifest_rows(src: ManifestSource) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or row number, row) of a manifest file, streamed."""
    fmt = src.format if src.format != "auto" else src.path.suffix.lower().lstrip(".")
    if not src.path.is_file():
        raise DataError(f"manifest source {src.path}: no such file")
    if fmt in ("csv", "tsv", "tab"):
        with src.path.open(encoding="utf-8", newline="") as f:
            for k, row in enumerate(csv.DictReader(f, delimiter="\t" if fmt != "csv" else ","), 2):
                yield k, row
    elif fmt in ("jsonl", "ndjson"):
        with src.path.open(encoding="utf-8") as f:
            for k, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError as e:
                        raise DataError(f"{src.path}:{k}: not a JSON line ({e})") from e
                    yield k, row if isinstance(row, dict) else {}
    elif fmt == "parquet":
        k = 0
        for batch in pq.ParquetFile(src.path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                k += 1
                yield k, row
    else:
        raise DataError(f"manifest source {src.path}: unknown format {fmt!r} (csv, tsv, jsonl or parquet)")


def read_manifest(src: ManifestSource, bad: BadInput, reader: ImageReader) -> Iterator[TextPair]:
    """Rows of an image manifest; image paths are relative to the manifest's folder."""
    c = src.columns
    for side, col, fixed in (("src", c.src_lang, src.src_lang), ("tgt", c.tgt_lang, src.tgt_lang)):
        if col is None and fixed is None:
            raise DataError(f"manifest source {src.path}: set {side}_lang or columns.{side}_lang")
    need = [
        (f, col)
        for f, col in (
            ("image", c.image), ("src_text", c.src_text), ("tgt_text", c.tgt_text),
            ("src_lang", c.src_lang if src.src_lang is None else None),
            ("tgt_lang", c.tgt_lang if src.tgt_lang is None else None), ("split", c.split),
        )
        if col is not None
    ] + [(f"extra_columns[{i}]", col) for i, col in enumerate(src.extra_columns)]  # fmt: skip
    base = src.path.parent
    label = "line" if src.path.suffix.lower() != ".parquet" else "row"
    for k, row in manifest_rows(src):
        where = f"{src.path}:{k}" if label == "line" else f"{src.path} row {k}"
        missing = [f"{col!r} (columns.{f})" for f, col in need if col not in row]
        if missing:
            raise DataError(f"{where}: no column {', '.join(missing)}; has {sorted(row)}")
        split = None
        if c.split is not None:
            split = SPLIT_NAMES.get(str(row[c.split]).strip().lower())
            if split is None:
                bad("unknown_split", where, f"unknown split {row[c.split]!r} (train, val or test)")
                continue
        rel = str(row[c.image] or "")
        ref = ImageRef(str(Path(rel) if Path(rel).is_absolute() else base / rel), max_side=src.max_side)
        if not rel or not reader.exists(ref):
            bad("missing_image", where, f"image {rel!r} not found ({ref})")
            continue
        yield TextPair(
            src_lang=src.src_lang or str(row[c.src_lang or ""]),
            tgt_lang=src.tgt_lang or str(row[c.tgt_lang or ""]),
            src_text="" if row[c.src_text] is None else str(row[c.src_text]),
            tgt_text="" if row[c.tgt_text] is None else str(row[c.tgt_text]),
            origin="manifest",
            image_ref=ref,
            split=split,
            where=where,
            extra=tuple((col, _opt(row[col])) for col in src.extra_columns),
        )
