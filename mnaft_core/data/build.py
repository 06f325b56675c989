"""The data stage as one function: sources -> oriented, cleaned pairs -> hash split -> images -> table.

It streams. Records of published image datasets are kept as small references (text + where the image
is), at most a split's cap of them per direction and split (the hash-ordered first ones), and their
images are read, checked and written one row group at a time. Past `ranked.SPILL_AT` references (no
caps: every record is written) they go to sorted run files in a spill folder next to the output and
are merged back in the same order, so the memory image records take depends on neither the caps nor
the dataset's size (text pairs, which are rendered, are held in memory). A text pair that cannot be
rendered (no font, too long) is skipped, counted and replaced by the next. A bad record (missing or
corrupt image, unknown language, ...) stops the build naming its file and line, or with `skip_bad` is
skipped and counted by reason; a direction left with nothing at all is an error naming the direction
and the counts.

Parts: `build_part(cfg, i, n, folder)` writes the i-th of n contiguous slices of the rows (every part
plans the same, so they agree on the slices) and `finish_parts` joins them; the joined file is
byte-identical to a one-part build, because both write row groups of exactly ROW_GROUP rows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from mnaft_core.data.clean import (
    UnknownLanguageError,
    char_inventory,
    clean_pair,
    clean_text,
    dedupe,
    normalize_lang,
    within_inventory,
)
from mnaft_core.data.config import DataConfig, Direction
from mnaft_core.data.fonts import FontLibrary, NoFontError, detect_script
from mnaft_core.data.images import CarriedImage, CorruptImageError, ImageReader, carry_image
from mnaft_core.data.ranked import RankedRefs, RankedSeq
from mnaft_core.data.render import Rendered, TooLongToRenderError, render_text
from mnaft_core.data.sources import read_source
from mnaft_core.data.split import SPLITS, cap_of, hash_order, split_of, unit_hash
from mnaft_core.data.types import BadInput, DataError, TextPair

DATASET_FILE = "dataset.parquet"
PARTS_DIR = "parts"
ROW_GROUP = 256  # rows per Parquet row group: bounds the memory of writing and of reading back
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("split", pa.string()),
        ("direction", pa.string()),
        ("src_lang", pa.string()),
        ("tgt_lang", pa.string()),
        ("script", pa.string()),
        ("src_text", pa.string()),
        ("tgt_text", pa.string()),
        ("image", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("font", pa.string()),
        ("style", pa.string()),
        ("boxes", pa.list_(pa.list_(pa.int32()))),
        ("origin", pa.string()),
    ]
)
_SUMMARY_COLUMNS = ["direction", "split", "src_text", "tgt_lang", "font", "script", "origin"]


def schema_for(cfg: DataConfig) -> pa.Schema:
    """SCHEMA plus the published datasets' own fields (as nullable text columns)."""
    return pa.schema([*SCHEMA, *(pa.field(c, pa.string()) for c in cfg.extra_columns())])


@dataclass
class DatasetBuild:
    """The written dataset file plus what the dataset card reports."""

    path: Path
    config: DataConfig
    drops: Counter[str] = field(default_factory=Counter)
    drops_by_direction: dict[str, Counter[str]] = field(default_factory=dict)
    skipped_bad: Counter[str] = field(default_factory=Counter)
    first_bad: dict[str, str] = field(default_factory=dict)
    inventories: dict[str, str] = field(default_factory=dict)  # clean.charset's, per language

    @property
    def table(self) -> pa.Table:
        """The whole table (images included): for small datasets and tests; stages stream the file."""
        return pq.read_table(self.path)

    def summary(self) -> pa.Table:
        """Every column but the images."""
        return pq.read_table(self.path, columns=_SUMMARY_COLUMNS)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per direction and split."""
        out: dict[str, dict[str, int]] = {d.name: dict.fromkeys(SPLITS, 0) for d in self.config.directions}
        for b in pq.ParquetFile(self.path).iter_batches(batch_size=4096, columns=["direction", "split"]):
            for d, s in zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True):
                out[d][s] += 1
        return out


class _Sink:
    """Rows into Parquet row groups of exactly ROW_GROUP rows (the last shorter), whoever writes them."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.rows: dict[str, list[Any]] = {n: [] for n in schema.names}
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        for k, col in self.rows.items():
            col.append(row.get(k))
        self.count += 1
        if len(self.rows["id"]) >= ROW_GROUP:
            self._flush()

    def add_table(self, table: pa.Table) -> None:
        for row in table.to_pylist():
            self.add(row)

    def _flush(self) -> None:
        if self.rows["id"]:
            self.writer.write_table(pa.table(self.rows, schema=self.schema), row_group_size=ROW_GROUP)
            self.rows = {n: [] for n in self.schema.names}

    def close(self) -> None:
        self._flush()
        self.writer.close()


def pair_id(direction: str, src: str, tgt: str) -> str:
    """Stable row id: sha256 of direction, source and target."""
    return hashlib.sha256(f"{direction}\x00{src}\x00{tgt}".encode()).hexdigest()[:20]


def _normalized_directions(cfg: DataConfig) -> list[tuple[Direction, str, str]]:
    out = []
    for i, d in enumerate(cfg.directions):
        try:
            out.append((d, normalize_lang(d.src), normalize_lang(d.tgt)))
        except UnknownLanguageError as e:
            raise DataError(f"data.directions[{i}] ({d.src}->{d.tgt}): {e}") from e
    return out


@dataclass
class _Plan:
    """One direction and split: hash-ordered candidates; `exact` when all carry their own image (the
    first `cap` are the rows, a bad one is not replaced, so parts can slice them up front)."""

    direction: Direction
    split: str
    cands: Sequence[TextPair]
    exact: bool


@dataclass
class _Scan:
    plans: list[_Plan]
    drops: Counter[str]
    per_dir: dict[str, Counter[str]]
    read: dict[str, int]
    with_images: set[str]
    refs: RankedRefs | None = None  # where the plans' image records are read from
    inventories: dict[str, str] = field(default_factory=dict)  # clean.charset's, per language

    def close(self) -> None:
        """Remove the spilled references (once the plans were written)."""
        if self.refs is not None:
            self.refs.close()


def _scan(
    cfg: DataConfig, dirs: list[tuple[Direction, str, str]], bad: BadInput, spill: Path | None = None
) -> _Scan:
    """Read every source once; text pairs in memory, image records as the first `cap` references
    (spilled to a folder made in ``spill`` past `ranked.SPILL_AT` of them; `_Scan.close` removes it)."""
    refs = RankedRefs(spill)
    try:
        return _scan_into(cfg, dirs, bad, refs)
    except BaseException:
        refs.close()
        raise


def _scan_into(
    cfg: DataConfig, dirs: list[tuple[Direction, str, str]], bad: BadInput, refs: RankedRefs
) -> _Scan:
    needed = {(s, t) if s == "en" or (t != "en" and s < t) else (t, s) for _, s, t in dirs}
    salt = f"{cfg.split.salt}/{cfg.seed}"
    drops: Counter[str] = Counter()
    per_dir: dict[str, Counter[str]] = {d.name: Counter() for d, _, _ in dirs}
    text: dict[str, list[TextPair]] = {d.name: [] for d, _, _ in dirs}
    read: dict[str, int] = dict.fromkeys(text, 0)
    reader = ImageReader()
    try:
        for source in cfg.sources:
            for pair in read_source(source, needed, drops, bad, reader):
                try:
                    a, b = normalize_lang(pair.src_lang), normalize_lang(pair.tgt_lang)
                except UnknownLanguageError as e:
                    if pair.where:
                        bad("unknown_language", pair.where, str(e))
                    else:
                        drops["unknown_language"] += 1
                    continue
                for d, s, t in dirs:
                    if (a, b) == (s, t):
                        oriented = replace(pair, src_lang=d.src, tgt_lang=d.tgt)
                        read[d.name] += 1
                        if pair.image_ref is None:
                            text[d.name].append(oriented)
                            continue
                        p = clean_pair(oriented, cfg.clean, per_dir[d.name])
                        if p is None:
                            continue
                        split = p.split or split_of(p.src_text, cfg.split)
                        key = (unit_hash(f"{salt}/{d.name}", p.src_text), p.src_text, p.where)
                        refs.add((d.name, split), key, p, cap_of(split, cfg.split))
                    elif (a, b) == (t, s) and pair.image_ref is None:  # image shows the other side
                        read[d.name] += 1
                        text[d.name].append(TextPair(d.src, d.tgt, pair.tgt_text, pair.src_text, pair.origin))
    finally:
        reader.close()

    plans: list[_Plan] = []
    with_images = {name for name, _ in refs.groups}
    inventories = _inventories(cfg, dirs, text)
    for d, s, t in dirs:
        dd = per_dir[d.name]
        cleaned = [p for p in (clean_pair(p, cfg.clean, dd) for p in text[d.name]) if p is not None]
        cleaned = dedupe(cleaned, cfg.clean.one_target_per_source, dd)
        for lang, side in ((s, "src_text"), (t, "tgt_text")):
            if lang in inventories:
                kept = [p for p in cleaned if within_inventory(getattr(p, side), inventories[lang])]
                dd["outside_charset"] += len(cleaned) - len(kept)
                cleaned = kept
        for split in SPLITS:
            cands = [p for p in cleaned if (p.split or split_of(p.src_text, cfg.split)) == split]
            ordered = hash_order(cands, d.name, salt, lambda p: p.src_text)
            n_images, images = refs.first((d.name, split))
            if not n_images:
                plans.append(_Plan(d, split, ordered, exact=False))
            elif not ordered:
                plans.append(_Plan(d, split, RankedSeq([images], n_images), exact=True))
            else:  # both kinds: one hash order (text pairs rank like image records, before them on ties)
                keyed = [((unit_hash(f"{salt}/{d.name}", p.src_text), p.src_text, ""), p) for p in ordered]
                both = RankedSeq([partial(iter, keyed), images], len(keyed) + n_images)
                plans.append(_Plan(d, split, both, exact=False))
    return _Scan(plans, drops, per_dir, read, with_images, refs, inventories)


def _inventories(
    cfg: DataConfig, dirs: list[tuple[Direction, str, str]], text: dict[str, list[TextPair]]
) -> dict[str, str]:
    """clean.charset's inventory per (normalised) language, from the distinct cleaned texts of that
    language in every configured direction's text pairs: en->zh and zh->en read the same catalog pairs,
    so either direction alone gives the same inventory."""
    out: dict[str, str] = {}
    for tag, size in cfg.clean.charset.items():
        lang = normalize_lang(tag)
        texts = {
            clean_text(p.src_text if s == lang else p.tgt_text)
            for d, s, t in dirs
            if lang in (s, t)
            for p in text[d.name]
        }
        out[lang] = char_inventory(texts, size)
    return out


def _rng(seed: int, lang: str, text: str) -> np.random.Generator:
    """Per-text RNG: the same text in the same language gets the same image in every direction."""
    h = hashlib.sha256(f"{seed}\x00{lang}\x00{text}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "big"))


def _slices(
    plans: list[_Plan], cfg: DataConfig, part: int, parts: int
) -> Iterator[tuple[_Plan, Sequence[TextPair]]]:
    """The candidates part ``part`` of ``parts`` writes, plan by plan, in the one-part order."""
    if parts == 1:
        for p in plans:
            yield p, p.cands
        return
    if any(not p.exact and p.cands for p in plans):
        raise DataError(
            "data in parts needs sources whose records carry their own images (mit10m, ocrmt30k, "
            "manifest): text pairs are rendered in one part (run with parts: 1)"
        )
    sizes = [min(len(p.cands), cap_of(p.split, cfg.split)) for p in plans]
    total = sum(sizes)
    lo, hi = part * total // parts, (part + 1) * total // parts
    start = 0
    for p, n in zip(plans, sizes, strict=True):
        a, b = max(lo, start) - start, min(hi, start + n) - start
        if a < b:
            yield p, p.cands[a:b]
        start += n


def _write_rows(
    cfg: DataConfig,
    scan: _Scan,
    sink: _Sink,
    bad: BadInput,
    per_dir: dict[str, Counter[str]],
    part: int,
    parts: int,
    progress: bool,
) -> dict[str, str]:
    """Render or carry the rows of this part into ``sink``; the first no-font error per direction."""
    fonts = FontLibrary.discover(cfg.render.font_dirs)
    reader = ImageReader()
    cache: dict[tuple[str, str], Rendered] = {}
    first_error: dict[str, str] = {}
    work = list(_slices(scan.plans, cfg, part, parts))
    total = sum(len(c) if p.exact or parts > 1 else min(len(c), cap_of(p.split, cfg.split)) for p, c in work)
    bar = tqdm(total=total, desc="data", unit="row", disable=None if progress else True)
    try:
        for plan, cands in work:
            d, split, cap = plan.direction, plan.split, cap_of(plan.split, cfg.split)
            kept = 0
            for p in cands[:cap] if plan.exact else cands:
                if not plan.exact and kept >= cap:
                    break
                script = detect_script(p.src_text, normalize_lang(p.src_lang))
                style: dict[str, Any]
                try:
                    if p.image_ref is not None or p.image is not None:
                        img = _carried(p, reader, bad, cfg.max_pixels)
                        if img is None:
                            continue
                        data, width, height, font, boxes = img.data, img.width, img.height, "", []
                        style = {"source": p.origin}
                    else:
                        key = (p.src_lang, p.src_text)
                        if key not in cache:
                            rng = _rng(cfg.seed, *key)
                            cache[key] = render_text(p.src_text, script, rng, cfg.render, fonts)
                        r = cache[key]
                        data, width, height, font = r.png(), r.image.width, r.image.height, r.font
                        style, boxes = r.style, [list(b) for b in r.boxes]
                except NoFontError as e:
                    per_dir[d.name]["no_font"] += 1
                    first_error.setdefault(d.name, str(e))
                    continue
                except TooLongToRenderError:
                    per_dir[d.name]["too_long_to_render"] += 1
                    continue
                ident = f"{p.tgt_text}\x00{p.where}" if p.image_ref is not None else p.tgt_text
                sink.add(
                    {
                        "id": pair_id(d.name, p.src_text, ident), "split": split, "direction": d.name,
                        "src_lang": p.src_lang, "tgt_lang": p.tgt_lang, "script": script,
                        "src_text": p.src_text, "tgt_text": p.tgt_text, "image": data, "width": width,
                        "height": height, "font": font, "style": json.dumps(style, sort_keys=True),
                        "boxes": boxes, "origin": p.origin, **dict(p.extra),
                    }
                )  # fmt: skip
                kept += 1
                bar.update(1)
    finally:
        bar.close()
        reader.close()
    return first_error


def _carried(p: TextPair, reader: ImageReader, bad: BadInput, max_pixels: int) -> CarriedImage | None:
    """A record's own image, checked (None once reported to ``bad`` as missing, unreadable or corrupt)."""
    where = p.where or "a rendered-dataset row"
    if p.image_ref is not None:
        try:
            data = reader.read(p.image_ref)
        except FileNotFoundError:
            bad("missing_image", where, f"image {p.image_ref} is missing")
            return None
        except OSError as e:
            bad("unreadable_image", where, f"image {p.image_ref} cannot be read ({e})")
            return None
        box, max_side = p.image_ref.box, p.image_ref.max_side
    else:
        data, box, max_side = p.image or b"", None, None
    try:
        return carry_image(data, box, max_side, max_pixels)
    except CorruptImageError as e:
        bad("corrupt_image", where, f"{e} in {p.image_ref or 'the image cell'}")
        return None


def _check(
    cfg: DataConfig, build: DatasetBuild, scan: _Scan, first_error: dict[str, str], bad: BadInput
) -> None:
    """Every direction has rows; a published dataset's direction has every split (or it is reported)."""
    counts = build.counts
    for d in cfg.directions:
        if not any(counts[d.name].values()):
            why = f"; first error: {first_error[d.name]}" if d.name in first_error else ""
            raise DataError(
                f"direction {d.name}: no usable pairs ({scan.read[d.name]} read; dropped "
                f"{dict(scan.per_dir[d.name]) or 'none'}; source-level drops {dict(scan.drops) or 'none'}; "
                f"bad records skipped {dict(bad.counts) or 'none'}){why}"
            )
        if d.name in scan.with_images:
            for s in SPLITS:
                if counts[d.name][s] == 0:
                    bad("empty_split", f"direction {d.name}", f"split {s!r} has no rows")


def build_part(cfg: DataConfig, part: int, parts: int, folder: Path, progress: bool = True) -> Path:
    """Write part ``part`` of ``parts`` (rows and its counts) into ``folder``/parts; returns its file."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} is not in 0..{parts - 1}")
    out = folder / PARTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    dirs = _normalized_directions(cfg)
    bad = BadInput(skip=cfg.skip_bad)
    scan = _scan(cfg, dirs, bad, spill=out)
    per_dir: dict[str, Counter[str]] = {d.name: Counter() for d, _, _ in dirs}
    write_bad = BadInput(skip=cfg.skip_bad)
    name = f"part-{part:05d}-of-{parts:05d}"
    tmp = out / f"{name}.parquet.partial"
    try:
        sink = _Sink(tmp, schema_for(cfg))
        first_error = _write_rows(cfg, scan, sink, write_bad, per_dir, part, parts, progress)
        sink.close()
        tmp.replace(out / f"{name}.parquet")
    finally:
        scan.close()
        tmp.unlink(missing_ok=True)
    summary = {
        "scan": {"drops": scan.drops, "per_dir": scan.per_dir, "read": scan.read,
                 "with_images": sorted(scan.with_images), "bad": bad.counts, "first_bad": bad.first,
                 "inventories": scan.inventories},
        "write": {"per_dir": per_dir, "bad": write_bad.counts, "first_bad": write_bad.first,
                  "first_error": first_error},
    }  # fmt: skip
    (out / f"{name}.json").write_text(json.dumps(summary, sort_keys=True))
    return out / f"{name}.parquet"


def part_done(folder: Path, part: int, parts: int) -> bool:
    """Whether part ``part`` of ``parts`` was written completely into ``folder``."""
    return (folder / PARTS_DIR / f"part-{part:05d}-of-{parts:05d}.json").is_file()


def finish_parts(cfg: DataConfig, folder: Path, parts: int) -> DatasetBuild:
    """Join the parts in ``folder`` into ``folder``/dataset.parquet (and drop them); checks the result."""
    src = folder / PARTS_DIR
    missing = [i for i in range(parts) if not part_done(folder, i, parts)]
    if missing:
        raise DataError(f"{src}: data parts {missing} of {parts} are not written yet")
    path = folder / DATASET_FILE
    tmp = path.with_suffix(".parquet.partial")
    sink = _Sink(tmp, schema_for(cfg))
    summaries = []
    try:
        for i in range(parts):
            name = f"part-{i:05d}-of-{parts:05d}"
            for batch in pq.ParquetFile(src / f"{name}.parquet").iter_batches(batch_size=ROW_GROUP):
                sink.add_table(pa.Table.from_batches([batch]))
            summaries.append(json.loads((src / f"{name}.json").read_text()))
        sink.close()
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    scan_s = summaries[0]["scan"]  # every part scanned the same records
    # in the directions' order, as a one-part build has them (the part files' JSON has sorted keys)
    per_dir = {d.name: Counter(scan_s["per_dir"].get(d.name, {})) for d in cfg.directions}
    bad = BadInput(skip=cfg.skip_bad, counts=Counter(scan_s["bad"]), first=dict(scan_s["first_bad"]))
    first_error: dict[str, str] = {}
    for s in summaries:
        for d, c in s["write"]["per_dir"].items():
            per_dir[d].update(c)
        bad.counts.update(s["write"]["bad"])
        for k, v in s["write"]["first_bad"].items():
            bad.first.setdefault(k, v)
        for k, v in s["write"]["first_error"].items():
            first_error.setdefault(k, v)
    scan = _Scan([], Counter(scan_s["drops"]), per_dir, scan_s["read"], set(scan_s["with_images"]),
                 inventories=scan_s["inventories"])  # fmt: skip
    build = DatasetBuild(path=path, config=cfg, drops=Counter(scan.drops), drops_by_direction=per_dir,
                         inventories=scan.inventories)  # fmt: skip
    _check(cfg, build, scan, first_error, bad)
    for c in per_dir.values():
        build.drops.update(c)
    build.skipped_bad, build.first_bad = bad.counts, bad.first
    shutil.rmtree(src, ignore_errors=True)
    return build


def build_dataset(cfg: DataConfig, progress: bool = True, out_dir: Path | None = None) -> DatasetBuild:
    """Build the dataset for every configured direction into ``out_dir`` (a temporary folder if None)."""
    folder = out_dir if out_dir is not None else Path(tempfile.mkdtemp(prefix="mnaft-data-"))
    folder.mkdir(parents=True, exist_ok=True)
    dirs = _normalized_directions(cfg)
    bad = BadInput(skip=cfg.skip_bad)
    scan = _scan(cfg, dirs, bad, spill=folder)
    per_dir: dict[str, Counter[str]] = {name: Counter(c) for name, c in scan.per_dir.items()}
    path = folder / DATASET_FILE
    tmp = path.with_suffix(".parquet.partial")
    try:
        sink = _Sink(tmp, schema_for(cfg))
        first_error = _write_rows(cfg, scan, sink, bad, per_dir, 0, 1, progress)
        sink.close()
        tmp.replace(path)
    finally:
        scan.close()
        tmp.unlink(missing_ok=True)
    scan.per_dir = per_dir
    build = DatasetBuild(path=path, config=cfg, drops=Counter(scan.drops), drops_by_direction=per_dir,
                         inventories=scan.inventories)  # fmt: skip
    _check(cfg, build, scan, first_error, bad)
    for c in per_dir.values():
        build.drops.update(c)
    build.skipped_bad, build.first_bad = bad.counts, bad.first
    return build


def write_dataset(build: DatasetBuild, out_dir: Path) -> Path:
    """Place the dataset file as `dataset.parquet` in out_dir (a copy unless it was built there)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / DATASET_FILE
    if build.path.resolve() == path.resolve():
        return path
    tmp = path.with_suffix(".parquet.partial")
    try:
        shutil.copyfile(build.path, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
