"""Tiny datasets in the layouts MIT-10M, OCRMT30K and a manifest are published in, for the tests.

Each can add one broken record of every kind the data stage must name (missing, unreadable and corrupt
image, unknown language, misaligned line files, empty split).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

EN = ["Exit", "Open file", "Save", "Close window", "Help", "New folder", "Print", "Cancel", "Search",
      "Settings", "Quit", "Copy", "Paste", "Delete"]  # fmt: skip
ZH = ["出口", "打开文件", "保存", "关闭窗口", "帮助", "新建文件夹", "打印", "取消", "搜索", "设置", "退出",
      "复制", "粘贴", "删除"]  # fmt: skip
JA = ["出口", "ファイルを開く", "保存", "ウィンドウを閉じる", "ヘルプ", "新しいフォルダー", "印刷",
      "キャンセル", "検索", "設定", "終了", "コピー", "貼り付け", "削除"]  # fmt: skip
TRAIN, TEST = range(0, 11), range(11, 14)
CATEGORIES = ("sign", "menu")
SIZES = ("small", "medium", "large")  # only in a tree made with a size_field


def image_bytes(i: int, fmt: str = "JPEG", size: tuple[int, int] = (64, 32)) -> bytes:
    """A small picture (a coloured strip with a mark), different for every ``i``."""
    im = Image.new("RGB", size, ((37 * i) % 256, (91 * i) % 256, (53 * i + 80) % 256))
    ImageDraw.Draw(im).rectangle((4 + i % 20, 6, 20 + i % 30, 24), fill=(250, 250, 250))
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def _jsonl(path: Path, rows: list[dict[str, object]], extra_lines: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def mit10m(root: Path, broken: bool = False, size_field: str | None = None) -> Path:
    """MIT-10M's layout: train/ and test/ JSONL per source language (EN.jsonl: en->zh and en->ja of the
    same images); en images in `en.zip` (members `en/...`), ja images in `ja.zip` (members without the
    prefix), zh images in a `zh/` folder. The records have the published fields (see
    `Mit10mSource`); ``size_field`` adds an image size class under that name, as a copy might."""
    root.mkdir(parents=True, exist_ok=True)
    pairs = {"en": (("zh", ZH), ("ja", JA)), "zh": (("en", EN),), "ja": (("en", EN),)}
    texts = {"en": EN, "zh": ZH, "ja": JA}
    zips = {lang: zipfile.ZipFile(root / f"{lang}.zip", "w") for lang in ("en", "ja")}
    (root / "zh").mkdir(parents=True, exist_ok=True)
    for split, idx in (("train", TRAIN), ("test", TEST)):
        for sl, targets in pairs.items():
            rows = []
            for i in idx:
                img = f"{sl}/{split}_{i:03d}.jpg"
                data = image_bytes(i + 100 * len(sl) + (0 if sl == "en" else 50))
                if sl == "zh":
                    (root / img).write_bytes(data)
                else:
                    zips[sl].writestr(img if sl == "en" else img.split("/", 1)[1], data)
                for tl, tgt in targets:
                    rows.append({
                        "id": f"{sl}-{tl}-{split}-{i}", "img": img, "src_lang": sl, "tgt_lang": tl,
                        "src_text": texts[sl][i], "tgt_text": tgt[i], "split": split, "cate_id": i % 2,
                        "cate_name": CATEGORIES[i % 2], "difficulty": ["easy", "medium", "hard"][i % 3],
                        "box_cnt": 1 + i % 3,
                    } | ({size_field: SIZES[i % 3]} if size_field else {}))  # fmt: skip
            _jsonl(root / split / f"{sl.upper()}.jsonl", rows)
    for zf in zips.values():
        zf.close()
    if broken:
        add_mit10m_broken(root)
    return root


BROKEN_KINDS = ("missing_image", "corrupt_image", "unknown_language", "unreadable_image")


def add_mit10m_broken(root: Path, kinds: tuple[str, ...] = BROKEN_KINDS) -> dict[str, int]:
    """Append one bad record of each kind to train/ZH.jsonl; returns kind -> its line number."""
    path = root / "train" / "ZH.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    base = {"src_lang": "zh", "tgt_lang": "en", "split": "train", "cate_id": 0, "cate_name": "sign",
            "difficulty": "easy", "box_cnt": 1}  # fmt: skip
    where = {}
    for n, kind in enumerate(kinds):
        rec = {**base, "id": f"bad-{kind}", "img": f"zh/bad_{kind}.jpg", "src_text": f"坏的记录{n}",
               "tgt_text": f"bad record {n}"}  # fmt: skip
        if kind == "corrupt_image":
            (root / rec["img"]).write_bytes(image_bytes(1)[:200])  # a truncated JPEG
        elif kind == "unknown_language":
            (root / rec["img"]).write_bytes(image_bytes(2))
            rec["src_lang"] = "xx-notalang"
        elif kind == "unreadable_image":  # an archive member whose bytes no longer match its CRC
            zpath = root / "bad.zip"
            with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr("bad/flipped.jpg", image_bytes(3))
            raw = bytearray(zpath.read_bytes())
            raw[60] ^= 0xFF
            zpath.write_bytes(bytes(raw))
            rec["img"] = "bad/flipped.jpg"
        lines.append(json.dumps(rec, ensure_ascii=False))
        where[kind] = len(lines)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return where


def ocrmt30k(root: Path, broken: bool = False) -> Path:
    """OCRMT30K v2.0's layout. Image 0 of each split has raw_data boxes for its two lines (two cropped
    samples); the others have no raw_data (one whole-image sample with their lines in order)."""
    v2 = root / "v2.0"
    images, before, after, raw = (v2 / "whole_image_v2", v2 / "after_proprecess" / "before_tok_bpe",
                                  v2 / "after_proprecess" / "after_tok_bpe", v2 / "raw_data")  # fmt: skip
    for d in (images, before, after, raw):
        d.mkdir(parents=True, exist_ok=True)
    k = 0
    for split, n_images in (("train", 5), ("valid", 2), ("test", 2)):
        names, zh, en = [], [], []
        for j in range(n_images):
            name = f"OCRMT30K_{k:05d}.jpg"
            (images / name).write_bytes(image_bytes(k, size=(96, 64)))
            lines = [(ZH[(k + m) % len(ZH)], EN[(k + m) % len(EN)]) for m in range(2 if j == 0 else 1)]
            if j == 0:
                raw.joinpath(f"OCRMT30K_{k:05d}.txt").write_text(
                    f"2,2,60,2,60,20,2,20,{lines[0][0]}\n10,30,90,30,90,60,10,60,{lines[1][0]}\n",
                    encoding="utf-8",
                )
            for a, b in lines:
                names.append(name)
                zh.append(a)
                en.append(b)
            k += 1
        # the repository keeps image_test.txt in after_tok_bpe/ only
        (after if split == "test" else before).joinpath(f"image_{split}.txt").write_text(
            "\n".join(names) + "\n"
        )
        before.joinpath(f"ocr_zh_{split}.txt").write_text("\n".join(zh) + "\n", encoding="utf-8")
        before.joinpath(f"ocr_en_{split}.txt").write_text("\n".join(en) + "\n", encoding="utf-8")
    if broken:
        add_ocrmt30k_broken(v2)
    return v2


def add_ocrmt30k_broken(v2: Path) -> None:
    """valid: en file one line short (misaligned); test: one missing and one corrupt image."""
    before = v2 / "after_proprecess" / "before_tok_bpe"
    en = before / "ocr_en_valid.txt"
    en.write_text("\n".join(en.read_text(encoding="utf-8").splitlines()[:-1]) + "\n", encoding="utf-8")
    img = v2 / "after_proprecess" / "after_tok_bpe" / "image_test.txt"
    img.write_text(img.read_text() + "OCRMT30K_99998.jpg\nOCRMT30K_99999.jpg\n")
    (v2 / "whole_image_v2" / "OCRMT30K_99999.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for kind, a, b in (("zh", "没有图片", "坏的图片"), ("en", "no image", "bad image")):
        f = before / f"ocr_{kind}_test.txt"
        f.write_text(f.read_text(encoding="utf-8") + f"{a}\n{b}\n", encoding="utf-8")


def manifest(root: Path, fmt: str = "csv", broken: bool = False) -> Path:
    """A manifest of en<->ja pairs with images under images/, paths relative to the manifest."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for i in range(len(EN)):
        split = "test" if i in TEST else ("val" if i == 9 else "train")
        for sl, tl, a, b in (("en", "ja", EN[i], JA[i]), ("ja", "en", JA[i], EN[i])):
            rel = f"images/{sl}_{i:02d}.png"
            (root / rel).write_bytes(image_bytes(i + (0 if sl == "en" else 40), fmt="PNG"))
            rows.append({"file": rel, "text": a, "translation": b, "sl": sl, "tl": tl, "split": split,
                         "category": CATEGORIES[i % 2]})  # fmt: skip
    if broken:
        (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        rows += [
            {**rows[0], "file": "images/none.png", "text": "Missing one"},
            {**rows[0], "file": "images/corrupt.png", "text": "Corrupt one"},
            {**rows[0], "sl": "qq-nolang", "text": "Unknown one"},
        ]
    path = root / f"manifest.{fmt}"
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif fmt == "jsonl":
        _jsonl(path, rows)  # type: ignore[arg-type]
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


MANIFEST_COLUMNS = {"image": "file", "src_text": "text", "tgt_text": "translation", "src_lang": "sl",
                    "tgt_lang": "tl", "split": "split"}  # fmt: skip
