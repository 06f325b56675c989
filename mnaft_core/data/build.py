"""The data stage as one function: sources -> oriented, cleaned pairs -> hash split -> images -> table.

Bad input never stops a build half way: a row that cannot be used is skipped and counted by reason,
and only a direction left with nothing at all is an error (naming the direction and the counts).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from mnaft_core.data.clean import UnknownLanguageError, clean_pair, dedupe, normalize_lang
from mnaft_core.data.config import DataConfig, Direction
from mnaft_core.data.fonts import FontLibrary, NoFontError, detect_script
from mnaft_core.data.render import Rendered, TooLongToRenderError, render_text
from mnaft_core.data.sources import read_source
from mnaft_core.data.split import SPLITS, cap_of, hash_order, split_of
from mnaft_core.data.types import DataError, TextPair

DATASET_FILE = "dataset.parquet"
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


@dataclass
class DatasetBuild:
    """The built table plus what the dataset card reports."""

    table: pa.Table
    config: DataConfig
    drops: Counter[str] = field(default_factory=Counter)
    drops_by_direction: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per direction and split."""
        out: dict[str, dict[str, int]] = {d.name: dict.fromkeys(SPLITS, 0) for d in self.config.directions}
        for d, s in zip(self.table["direction"].to_pylist(), self.table["split"].to_pylist(), strict=True):
            out[d][s] += 1
        return out


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


def _collect(
    cfg: DataConfig, dirs: list[tuple[Direction, str, str]], drops: Counter[str]
) -> dict[str, list[TextPair]]:
    """Read every source and orient its pairs into the configured directions."""
    needed = {(s, t) if s == "en" or (t != "en" and s < t) else (t, s) for _, s, t in dirs}
    by_dir: dict[str, list[TextPair]] = {d.name: [] for d, _, _ in dirs}
    for source in cfg.sources:
        for pair in read_source(source, needed, drops):
            try:
                a, b = normalize_lang(pair.src_lang), normalize_lang(pair.tgt_lang)
            except UnknownLanguageError:
                drops["unknown_language"] += 1
                continue
            for d, s, t in dirs:
                if (a, b) == (s, t):
                    by_dir[d.name].append(
                        TextPair(d.src, d.tgt, pair.src_text, pair.tgt_text, pair.origin, pair.image)
                    )
                elif (a, b) == (t, s):  # the image shows the other side's text: render anew
                    by_dir[d.name].append(TextPair(d.src, d.tgt, pair.tgt_text, pair.src_text, pair.origin))
    return by_dir


def _carried_image(data: bytes) -> Rendered:
    """Re-encode a dataset's own image as RGB PNG; raises DataError if it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"corrupt image ({e})") from e
    return Rendered(rgb, "", {"source": "rendered"}, [])


def _rng(seed: int, lang: str, text: str) -> np.random.Generator:
    """Per-text RNG: the same text in the same language gets the same image in every direction."""
    h = hashlib.sha256(f"{seed}\x00{lang}\x00{text}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "big"))


def build_dataset(cfg: DataConfig, progress: bool = True) -> DatasetBuild:
    """Build the rendered dataset for every configured direction."""
    dirs = _normalized_directions(cfg)
    fonts = FontLibrary.discover(cfg.render.font_dirs)
    drops: Counter[str] = Counter()
    by_dir = _collect(cfg, dirs, drops)

    plan: list[tuple[Direction, str, list[TextPair]]] = []  # (direction, split, hash-ordered candidates)
    per_dir: dict[str, Counter[str]] = {}
    for d, _, _ in dirs:
        dd: Counter[str] = Counter()
        cleaned = [p for p in (clean_pair(p, cfg.clean, dd) for p in by_dir[d.name]) if p is not None]
        cleaned = dedupe(cleaned, cfg.clean.one_target_per_source, dd)
        per_dir[d.name] = dd
        for split in SPLITS:
            cands = [p for p in cleaned if split_of(p.src_text, cfg.split) == split]
            plan.append(
                (d, split, hash_order(cands, d.name, f"{cfg.split.salt}/{cfg.seed}", lambda p: p.src_text))
            )

    rows: dict[str, list[object]] = {name: [] for name in SCHEMA.names}
    cache: dict[tuple[str, str], Rendered] = {}
    first_error: dict[str, str] = {}
    total = sum(min(len(c), cap_of(s, cfg.split)) for _, s, c in plan)
    bar = tqdm(total=total, desc="render", unit="img", disable=None if progress else True)
    for d, split, cands in plan:
        kept, cap = 0, cap_of(split, cfg.split)
        for p in cands:
            if kept >= cap:
                break
            script = detect_script(p.src_text, normalize_lang(p.src_lang))
            try:
                if p.image is not None:
                    r = _carried_image(p.image)
                else:
                    key = (p.src_lang, p.src_text)
                    if key not in cache:
                        cache[key] = render_text(p.src_text, script, _rng(cfg.seed, *key), cfg.render, fonts)
                    r = cache[key]
            except NoFontError as e:
                per_dir[d.name]["no_font"] += 1
                first_error.setdefault(d.name, str(e))
                continue
            except TooLongToRenderError:
                per_dir[d.name]["too_long_to_render"] += 1
                continue
            except DataError as e:
                per_dir[d.name]["corrupt_image"] += 1
                first_error.setdefault(d.name, str(e))
                continue
            png = r.png()
            for k, v in (
                ("id", pair_id(d.name, p.src_text, p.tgt_text)),
                ("split", split),
                ("direction", d.name),
                ("src_lang", p.src_lang),
                ("tgt_lang", p.tgt_lang),
                ("script", script),
                ("src_text", p.src_text),
                ("tgt_text", p.tgt_text),
                ("image", png),
                ("width", r.image.width),
                ("height", r.image.height),
                ("font", r.font),
                ("style", json.dumps(r.style, sort_keys=True)),
                ("boxes", [list(b) for b in r.boxes]),
                ("origin", p.origin),
            ):
                rows[k].append(v)
            kept += 1
            bar.update(1)
    bar.close()

    for d, _, _ in dirs:
        drops.update(per_dir[d.name])
        if d.name not in rows["direction"]:
            why = f"; first error: {first_error[d.name]}" if d.name in first_error else ""
            raise DataError(
                f"direction {d.name}: no usable pairs ({len(by_dir[d.name])} read; dropped "
                f"{dict(per_dir[d.name]) or 'none'}; source-level drops {dict(drops) or 'none'}){why}"
            )
    table = pa.table(rows, schema=SCHEMA)
    return DatasetBuild(table=table, config=cfg, drops=drops, drops_by_direction=per_dir)


def write_dataset(build: DatasetBuild, out_dir: Path) -> Path:
    """Write the table as `dataset.parquet` in out_dir (written to a .partial file, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / DATASET_FILE
    tmp = path.with_suffix(".parquet.partial")
    try:
        pq.write_table(build.table, tmp, compression="zstd")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
