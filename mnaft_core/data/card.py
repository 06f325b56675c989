"""The dataset card: what was built, what was dropped and why, and what the images look like."""

from __future__ import annotations

import io
import json
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from mnaft_core.data.build import DatasetBuild
from mnaft_core.data.fonts import FontLibrary, NoFontError, detect_script
from mnaft_core.data.split import SPLITS

CARD_JSON, CARD_MD, LENGTH_HIST, SAMPLES = "card.json", "card.md", "length_hist.png", "samples.png"
LENGTH_BINS = (0, 4, 8, 12, 16, 24, 32, 48, 64, 128, 10_000)
SAMPLES_PER_DIRECTION = 6


def card_data(build: DatasetBuild) -> dict[str, Any]:
    """The card's numbers as a JSON-able dict (the table read a few thousand rows at a time)."""
    lengths: dict[str, list[int]] = {d.name: [0] * (len(LENGTH_BINS) - 1) for d in build.config.directions}
    fonts: Counter[str] = Counter()
    scripts: Counter[str] = Counter()
    origins: Counter[str] = Counter()
    pf = pq.ParquetFile(build.path)
    for b in pf.iter_batches(batch_size=4096, columns=["direction", "src_text", "font", "script", "origin"]):
        for d, text in zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True):
            n = len(text)
            i = next(i for i in range(len(LENGTH_BINS) - 1) if n < LENGTH_BINS[i + 1])
            lengths[d][i] += 1
        fonts.update(f or "(carried image)" for f in b.column(2).to_pylist())
        scripts.update(b.column(3).to_pylist())
        origins.update(b.column(4).to_pylist())
    return {
        "rows": pf.metadata.num_rows,
        "counts": build.counts,
        "dropped": dict(sorted(build.drops.items())),
        "dropped_by_direction": {d: dict(sorted(c.items())) for d, c in build.drops_by_direction.items()},
        "skipped_bad": dict(sorted(build.skipped_bad.items())),
        "first_bad": dict(sorted(build.first_bad.items())),
        "fonts": dict(fonts.most_common()),
        "scripts": dict(scripts.most_common()),
        "origins": dict(origins.most_common()),
        "length_hist": {"bins": list(LENGTH_BINS), "source_chars": lengths},
        "charset_inventories": dict(sorted(build.inventories.items())),
        "config": build.config.model_dump(mode="json"),
    }


def _markdown(card: dict[str, Any]) -> str:
    lines = ["# Dataset card", "", f"{card['rows']} rows.", "", "## Pairs per direction and split", ""]
    lines += ["| direction | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS)]
    lines += [f"| {d} | " + " | ".join(str(c[s]) for s in SPLITS) + " |" for d, c in card["counts"].items()]
    for title, key in (
        ("Dropped, by reason", "dropped"),
        ("Bad records skipped (skip_bad), by reason", "skipped_bad"),
        ("Fonts", "fonts"),
        ("Scripts", "scripts"),
        ("Origins", "origins"),
    ):
        lines += ["", f"## {title}", "", "| | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in card[key].items()] or ["| (none) | 0 |"]
    for lang, inv in card.get("charset_inventories", {}).items():
        lines += ["", f"## Character inventory of {lang} (clean.charset: {len(inv)} characters)", "", inv]
    lines += ["", f"![source length histogram]({LENGTH_HIST})", "", f"![samples]({SAMPLES})", ""]
    return "\n".join(lines)


def _length_hist(card: dict[str, Any], path: Path) -> None:
    bins = card["length_hist"]["bins"]
    labels = [f"{a}-{b - 1}" if b < 10_000 else f"{a}+" for a, b in pairwise(bins)]
    fig = Figure(figsize=(7, 3.2), dpi=100)  # no pyplot: no global backend state, no GUI
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    series = card["length_hist"]["source_chars"]
    width = 0.8 / max(1, len(series))
    for k, (d, counts) in enumerate(series.items()):
        ax.bar([i + k * width for i in range(len(labels))], counts, width=width, label=d)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, fontsize=8)
    ax.set_xlabel("source length (characters)")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})


def _samples(build: DatasetBuild, path: Path) -> None:
    """A grid: per direction a few images, each with its source -> target caption."""
    fonts = FontLibrary.discover(build.config.render.font_dirs)
    by_dir: dict[str, list[dict[str, Any]]] = {}
    wanted = len(build.config.directions) * SAMPLES_PER_DIRECTION
    columns = ["direction", "src_text", "tgt_text", "tgt_lang", "image"]
    for batch in pq.ParquetFile(build.path).iter_batches(batch_size=64, columns=columns):  # streamed
        for r in batch.to_pylist():
            if len(by_dir.setdefault(r["direction"], [])) < SAMPLES_PER_DIRECTION:
                by_dir[r["direction"]].append(r)
        if sum(len(v) for v in by_dir.values()) >= wanted:
            break
    cell_w, caption_h, gap = build.config.render.max_width, 14, 6
    img_h = min(
        max([Image.open(io.BytesIO(r["image"])).height for rs in by_dir.values() for r in rs] or [1]), 128
    )  # a scene photo is shown as a thumbnail
    cols = SAMPLES_PER_DIRECTION
    row_h = 16 + img_h + caption_h + gap
    canvas = Image.new("RGB", (cols * (cell_w + gap) + gap, max(1, len(by_dir)) * row_h + gap), "white")
    draw = ImageDraw.Draw(canvas)
    label_font = ImageFont.load_default(12)
    for i, (d, rs) in enumerate(by_dir.items()):
        y = gap + i * row_h
        draw.text((gap, y), d, fill=(0, 0, 0), font=label_font)
        for j, r in enumerate(rs):
            x = gap + j * (cell_w + gap)
            im = Image.open(io.BytesIO(r["image"])).convert("RGB")
            im.thumbnail((cell_w, img_h))
            canvas.paste(im, (x, y + 16))
            caption = r["tgt_text"]
            try:
                f = fonts.for_text(caption, detect_script(caption, r["tgt_lang"]))[0]
                font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.truetype(
                    str(f.path), 11, index=f.index
                )
            except NoFontError:
                caption, font = caption.encode("ascii", "replace").decode(), label_font
            while caption and font.getlength(caption) > cell_w:
                caption = caption[:-2] + "…"
            draw.text((x, y + 16 + img_h + 1), caption, fill=(60, 60, 60), font=font)
    canvas.save(path, format="PNG")


def write_card(build: DatasetBuild, out_dir: Path) -> dict[str, Any]:
    """Write card.json, card.md, length_hist.png and samples.png into out_dir; returns the card dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    card = card_data(build)
    (out_dir / CARD_JSON).write_text(json.dumps(card, indent=2, ensure_ascii=False, sort_keys=False))
    (out_dir / CARD_MD).write_text(_markdown(card))
    _length_hist(card, out_dir / LENGTH_HIST)
    _samples(build, out_dir / SAMPLES)
    return card
