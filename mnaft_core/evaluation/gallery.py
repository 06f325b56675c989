"""The result gallery: what each system made of the same images, to look at rather than average.

Per direction, from the evaluate stage's ``outputs.parquet`` and the test images: the source image, its
reference, every system's output and its sentence chrF++ (mean over seeds when a system has several;
the text shown is the first seed's). Cases shown: the best, the median and the worst samples (by the
mean sentence chrF++ over systems) and those where the systems disagree most (largest spread of
sentence chrF++). Written as one self-contained HTML file (images inline), a PNG contact sheet per
direction, and Markdown tables for the Prefect UI.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw

from mnaft_core.evaluation.metrics import make_chrf
from mnaft_core.viz.text import draw_lines, font_face_css, font_for, line_height, wrap

KINDS = ("best", "median", "worst", "disagreement")
KIND_TITLES = {
    "best": "best (highest mean chrF++)",
    "median": "median",
    "worst": "worst (lowest mean chrF++)",
    "disagreement": "systems disagree most (largest chrF++ spread)",
}


@dataclass(frozen=True)
class Output:
    text: str
    chrf: float  # sentence chrF++ of ``text`` (the first seed's output)
    chrf_mean: float  # over seeds
    seeds: int


@dataclass(frozen=True)
class Case:
    kind: str
    sample_id: str
    source: str
    reference: str
    src_lang: str
    tgt_lang: str
    outputs: dict[str, Output]  # system -> output

    @property
    def mean(self) -> float:
        return sum(o.chrf_mean for o in self.outputs.values()) / max(len(self.outputs), 1)

    @property
    def spread(self) -> float:
        vals = [o.chrf_mean for o in self.outputs.values()]
        return max(vals) - min(vals) if vals else 0.0


def sentence_scores(outputs: pl.DataFrame) -> pl.DataFrame:
    """``outputs`` with a ``chrf`` column: sentence chrF++ of each hypothesis against its reference."""
    chrf = make_chrf()
    scores = [
        float(chrf.sentence_score(h or "", [r]).score)
        for h, r in zip(outputs["hypothesis"].to_list(), outputs["reference"].to_list(), strict=True)
    ]
    return outputs.with_columns(pl.Series("chrf", scores, dtype=pl.Float64))


def select_cases(outputs: pl.DataFrame, per_kind: int = 3) -> dict[str, list[Case]]:
    """Direction -> the cases to show, ``per_kind`` of each kind in ``KINDS`` (a sample may recur)."""
    scored = sentence_scores(outputs)
    systems = scored["system"].unique(maintain_order=True).to_list()
    out: dict[str, list[Case]] = {}
    for (direction,), part in scored.group_by(["direction"], maintain_order=True):
        samples: list[Case] = []
        for (sample_id,), rows in part.sort("seed").group_by(["sample_id"], maintain_order=True):
            first = rows.row(0, named=True)
            outs = {}
            for system in systems:
                mine = rows.filter(pl.col("system") == system)
                if mine.height:
                    outs[system] = Output(
                        mine["hypothesis"][0] or "",
                        float(mine["chrf"][0]),
                        float(mine["chrf"].mean()),  # type: ignore[arg-type]
                        mine.height,
                    )
            samples.append(Case("", str(sample_id), first["source"], first["reference"],
                                first["src_lang"], first["tgt_lang"], outs))  # fmt: skip
        by_mean = sorted(samples, key=lambda c: (-c.mean, c.sample_id))
        mid = len(by_mean) // 2
        picks = {
            "best": by_mean[:per_kind],
            "median": by_mean[max(0, mid - per_kind // 2) : max(0, mid - per_kind // 2) + per_kind],
            "worst": by_mean[::-1][:per_kind],
            "disagreement": sorted(samples, key=lambda c: (-c.spread, c.sample_id))[:per_kind],
        }
        out[str(direction)] = [
            Case(kind, c.sample_id, c.source, c.reference, c.src_lang, c.tgt_lang, c.outputs)
            for kind in KINDS
            for c in picks[kind]
        ]
    return out


def _png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _hue(chrf: float) -> str:
    """Red (0) through amber to green (100) for a score chip."""
    return f"hsl({max(0.0, min(100.0, chrf)) * 1.2:.0f}, 65%, 42%)"


_CSS = """
body{font-family:'mnaft-embedded',system-ui,sans-serif;margin:24px;color:#1d2330;
background:#fafbfc}
h1{font-size:22px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccd}h3{font-size:15px;color:#445}
.grid{display:flex;flex-wrap:wrap;gap:14px}
.case{background:#fff;border:1px solid #d6d9e0;border-radius:8px;padding:10px;width:420px}
.case img{max-width:400px;image-rendering:pixelated;border:1px solid #eee;display:block;margin-bottom:6px}
.src{color:#667;font-size:13px}.ref{font-size:14px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px}
td{padding:3px 4px;border-top:1px solid #eef;vertical-align:top}
td.sys{color:#445;white-space:nowrap;width:1%}td.score{text-align:right;white-space:nowrap;width:1%}
.chip{color:#fff;border-radius:4px;padding:1px 5px;font-variant-numeric:tabular-nums}
.empty{color:#a33;font-style:italic}
"""


def gallery_html(
    cases: Mapping[str, Sequence[Case]], images: Mapping[str, Image.Image], title: str = "Result gallery"
) -> str:
    """One HTML document, images inline (data: URIs): it opens anywhere, with nothing beside it."""
    esc = html.escape
    texts = [
        t
        for dc in cases.values()
        for c in dc
        for t in (c.source, c.reference, *(o.text for o in c.outputs.values()))
    ]
    fonts = font_face_css("".join(texts))  # CJK glyphs travel with the page
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{fonts}{_CSS}</style></head><body><h1>{esc(title)}</h1>",
             "<p>Sentence chrF++ per output (first seed's output; mean over seeds in brackets where a "
             "system has several). Cases are picked by the mean over systems.</p>"]  # fmt: skip
    for direction, dcases in cases.items():
        parts.append(f"<h2 id='{esc(direction)}'>{esc(direction)}</h2>")
        for kind in KINDS:
            chosen = [c for c in dcases if c.kind == kind]
            if not chosen:
                continue
            parts.append(f"<h3>{esc(KIND_TITLES[kind])}</h3><div class='grid'>")
            for c in chosen:
                img = images.get(c.sample_id)
                pic = (
                    f"<img alt='{esc(c.sample_id)}' src='data:image/png;base64,{_png_b64(img)}'>"
                    if img
                    else ""
                )
                rows = []
                for system, o in c.outputs.items():
                    text = esc(o.text) if o.text.strip() else "<span class='empty'>(empty)</span>"
                    mean = f" ({o.chrf_mean:.1f})" if o.seeds > 1 else ""
                    chip = f"<span class='chip' style='background:{_hue(o.chrf)}'>{o.chrf:.1f}</span>{mean}"
                    lang = esc(c.tgt_lang)
                    rows.append(f"<tr><td class='sys'>{esc(system)}</td><td lang='{lang}'>{text}</td>"
                                f"<td class='score'>{chip}</td></tr>")  # fmt: skip
                parts.append(
                    f"<div class='case' data-sample='{esc(c.sample_id)}'>{pic}"
                    f"<div class='src'>source: <span lang='{esc(c.src_lang)}'>{esc(c.source)}</span></div>"
                    f"<div class='ref' lang='{esc(c.tgt_lang)}'>reference: <b>{esc(c.reference)}</b></div>"
                    f"<table>{''.join(rows)}</table></div>"
                )
            parts.append("</div>")
    # A marker a headless browser's DOM dump shows: how many pictures decoded (tests read it).
    parts.append(
        "<script>addEventListener('load',()=>{document.body.dataset.imagesLoaded="
        "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length})</script>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def contact_sheet(
    direction: str, dcases: Sequence[Case], images: Mapping[str, Image.Image], col_width: int = 230
) -> Image.Image:
    """One PNG per direction: a row per case (kind, image, reference, each output with its chrF++)."""
    systems = list(dict.fromkeys(s for c in dcases for s in c.outputs))
    cols = ["case", "image / reference", *systems]
    widths = [130, max(col_width, 200), *([col_width] * len(systems))]
    pad, size = 6, 14
    head = font_for("Ag", "en", size + 2)
    row_images: list[Image.Image] = []
    for c in dcases:
        img = images.get(c.sample_id)
        cells: list[list[tuple[str, tuple[int, int, int]]]] = [
            [(c.kind, (60, 60, 90)), (c.sample_id, (120, 120, 140))],
            [(c.reference, (20, 20, 20))],
        ]
        for s in systems:
            o = c.outputs.get(s)
            if o is None:
                cells.append([("-", (150, 150, 150))])
            else:
                colour = (int(200 - 1.6 * min(o.chrf, 100)), int(60 + 1.2 * min(o.chrf, 100)), 60)
                cells.append([(o.text or "(empty)", (20, 20, 20)), (f"chrF++ {o.chrf:.1f}", colour)])
        wrapped = []
        for w, cell in zip(widths, cells, strict=True):
            lines = []
            for text, colour in cell:
                font = font_for(text, c.tgt_lang, size)
                lines += [(ln, colour, font) for ln in wrap(text, font, w - 2 * pad)]
            wrapped.append(lines)
        img_h = 0
        thumb = None
        if img is not None:
            scale = min(1.0, (widths[1] - 2 * pad) / img.width)
            thumb = img.convert("RGB").resize(
                (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
            )
            img_h = thumb.height + pad
        text_h = [sum(line_height(f) for _, _, f in lines) for lines in wrapped]
        text_h[1] += img_h
        h = max(text_h) + 2 * pad
        row = Image.new("RGB", (sum(widths), h), (255, 255, 255))
        draw = ImageDraw.Draw(row)
        x = 0
        for i, (w, lines) in enumerate(zip(widths, wrapped, strict=True)):
            y = pad
            if i == 1 and thumb is not None:
                row.paste(thumb, (x + pad, y))
                y += img_h
            for ln, colour, font in lines:
                draw.text((x + pad, y), ln, font=font, fill=colour)
                y += line_height(font)
            draw.line([(x, 0), (x, h)], fill=(220, 222, 228))
            x += w
        draw.line([(0, h - 1), (row.width, h - 1)], fill=(220, 222, 228))
        row_images.append(row)
    header_h = line_height(head) + 2 * pad
    total = header_h + sum(r.height for r in row_images)
    sheet = Image.new("RGB", (sum(widths), total), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.rectangle([0, 0, sheet.width, header_h], fill=(235, 238, 245))
    x = 0
    for w, name in zip(widths, cols, strict=True):
        label = f"{direction}: {name}" if name == "case" else name
        draw_lines(draw, (x + pad, 0, x + w, header_h), [label], head, (30, 30, 50), align="left")
        x += w
    y = header_h
    for r in row_images:
        sheet.paste(r, (0, y))
        y += r.height
    return sheet


def gallery_markdown(cases: Mapping[str, Sequence[Case]]) -> str:
    """The same cases as Markdown tables (outputs and chrF++), for the Prefect UI."""

    def cell(text: str) -> str:
        return (text or "(empty)").replace("|", "\\|").replace("\n", " ")

    md = ["# Result gallery", ""]
    for direction, dcases in cases.items():
        systems = list(dict.fromkeys(s for c in dcases for s in c.outputs))
        md += [f"## {direction}", "", "| case | source | reference | " + " | ".join(systems) + " |",
               "|" + " --- |" * (3 + len(systems))]  # fmt: skip
        for c in dcases:
            outs = [
                f"{cell(c.outputs[s].text)} ({c.outputs[s].chrf:.1f})" if s in c.outputs else ""
                for s in systems
            ]
            md.append(f"| {c.kind} | {cell(c.source)} | {cell(c.reference)} | " + " | ".join(outs) + " |")
        md.append("")
    return "\n".join(md)


def sheet_name(direction: str) -> str:
    return f"gallery_{re.sub(r'[^A-Za-z0-9-]', '_', direction)}.png"


def write_gallery(
    outputs: pl.DataFrame,
    images: Mapping[str, Image.Image],
    out: Path,
    per_kind: int = 3,
    title: str = "Result gallery",
) -> dict[str, Path]:
    """gallery.html, gallery.md and one gallery_<direction>.png per direction under ``out``."""
    cases = select_cases(outputs, per_kind)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "gallery.html", "md": out / "gallery.md"}
    paths["html"].write_text(gallery_html(cases, images, title), encoding="utf-8")
    paths["md"].write_text(gallery_markdown(cases), encoding="utf-8")
    for direction, dcases in cases.items():
        path = out / sheet_name(direction)
        contact_sheet(direction, dcases, images).save(path, optimize=True)
        paths[direction] = path
    return paths
