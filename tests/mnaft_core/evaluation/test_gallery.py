"""The result gallery: which cases it picks, and that its HTML page renders in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from PIL import Image, ImageDraw

from mnaft_core.evaluation.gallery import select_cases, sentence_scores, write_gallery
from mnaft_core.viz.text import font_for

ROOT = Path(__file__).resolve().parents[3]
OUTPUT = ROOT / "tests" / "output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EN = ["Open file", "Save", "Settings", "Close window", "Print page", "Help"]
WORDS = {"en-de": EN, "en-ja": EN}
REFS = {
    "en-de": ["Datei öffnen", "Speichern", "Einstellungen", "Fenster schließen", "Seite drucken", "Hilfe"],
    "en-ja": ["ファイルを開く", "保存", "設定", "ウィンドウを閉じる", "ページを印刷", "ヘルプ"],
}


def _outputs() -> tuple[pl.DataFrame, dict[str, Image.Image]]:
    rows, images = [], {}
    for direction, words in WORDS.items():
        tgt = direction.split("-")[1]
        for i, (src, ref) in enumerate(zip(words, REFS[direction], strict=True)):
            sid = f"{direction}-{i}"
            img = Image.new("RGB", (160, 32), "white")
            ImageDraw.Draw(img).text((4, 6), src, fill="black", font=font_for(src, "en", 18))
            images[sid] = img
            hyps = {
                ("base", 0): src,  # copies the source
                ("mnaft", 0): ref if i < 4 else ref[:2],  # right on the first four samples
                ("mnaft", 1): ref if i < 3 else "",
                ("ocr+mt", 0): ref if i in (0, 5) else "x",
            }
            rows += [{"sample_id": sid, "system": s, "seed": seed, "direction": direction, "src_lang": "en",
                      "tgt_lang": tgt, "source": src, "reference": ref, "hypothesis": h}
                     for (s, seed), h in hyps.items()]  # fmt: skip
    return pl.DataFrame(rows), images


def test_cases_are_the_best_median_worst_and_most_disagreeing() -> None:
    outputs, _ = _outputs()
    cases = select_cases(outputs, per_kind=2)
    assert set(cases) == {"en-de", "en-ja"}
    de = cases["en-de"]
    means = {c.sample_id: c.mean for c in de}
    by_kind = {k: [c for c in de if c.kind == k] for k in ("best", "median", "worst", "disagreement")}
    assert all(len(v) == 2 for v in by_kind.values())
    per_system = (
        sentence_scores(outputs.filter(pl.col("direction") == "en-de"))
        .group_by("sample_id", "system").agg(pl.col("chrf").mean())
        .group_by("sample_id").agg(pl.col("chrf").mean())
        .sort(["chrf", "sample_id"], descending=[True, False])
    )  # fmt: skip
    ranked = per_system["sample_id"].to_list()
    assert [c.sample_id for c in by_kind["best"]] == ranked[:2] and ranked[0] == "en-de-0"
    assert [c.sample_id for c in by_kind["worst"]] == ranked[::-1][:2]
    assert [c.sample_id for c in by_kind["median"]] == ranked[2:4]
    assert means[ranked[0]] == pytest.approx(per_system["chrf"][0])
    spread = [c.spread for c in by_kind["disagreement"]]
    assert spread[0] == max(c.spread for c in de) and spread[0] > 50  # one system right, others not
    mnaft = by_kind["best"][0].outputs["mnaft"]
    assert mnaft.seeds == 2 and mnaft.chrf == pytest.approx(100.0)
    scored = sentence_scores(outputs)  # sacrebleu's sentence chrF++: 100 for an exact match, 0 for empty
    assert scored.filter(pl.col("hypothesis") == pl.col("reference"))["chrf"].min() == pytest.approx(100.0)
    assert scored.filter(pl.col("hypothesis") == "")["chrf"].max() == 0.0


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make install-test installs it)")
def test_gallery_html_and_contact_sheets_render(tmp_path: Path) -> None:
    outputs, images = _outputs()
    paths = write_gallery(outputs, images, tmp_path / "gallery", per_kind=2, title="Gallery test")
    html = paths["html"].read_text()
    assert "src='http" not in html and 'src="http' not in html  # self-contained: images are data: URIs
    n_img = html.count("<img ")
    assert n_img == 2 * 4 * 2  # directions x kinds x per_kind
    for direction in ("en-de", "en-ja"):
        sheet = Image.open(paths[direction])
        assert sheet.width > 800 and sheet.height > 8 * 32  # a row per case, every system a column
    assert "| best | Open file | Datei öffnen | Open file (" in paths["md"].read_text()

    assert CHROMIUM is not None
    OUTPUT.mkdir(exist_ok=True)
    shot = OUTPUT / "gallery.png"
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--window-size=1400,1600", "--virtual-time-budget=5000"]  # fmt: skip
    url = paths["html"].as_uri()
    subprocess.run([*args, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*args, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom.stdout)
    assert loaded and int(loaded.group(1)) == n_img, "not every inline image decoded in Chromium"
    assert "ウィンドウを閉じる" in dom.stdout and "systems disagree most" in dom.stdout
    assert shot.stat().st_size > 20_000, "the screenshot looks empty"
    shutil.copy(paths["en-ja"], OUTPUT / "gallery_en-ja.png")  # for a person to look at
