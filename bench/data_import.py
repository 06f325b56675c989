"""Importing a MIT-10M-layout dataset: records/s and peak RSS at 10k and 100k records.

    python -m bench.data_import [--sizes 10000,100000] [--train-cap 500] [--eval-cap 20] [--all] [--keep DIR]

Generates, per size, a tree in MIT-10M's published layout (`train/<LANG>.jsonl`, `test/<LANG>.jsonl`,
images in per-language zip archives `<lang>.zip`, tiny JPEGs). As in MIT-10M, where 840k images carry
10M records (each image's text in the other languages), every image here carries its text into the
three other languages of en, zh, ja, de: records = 3 x images. The tree is imported with the data stage
(`build_dataset`, all 12 directions), each size in a fresh process, reporting wall time, records read
per second, rows written per second and the process's peak RSS (ru_maxrss).

The caps (`--train-cap` / `--eval-cap` rows per direction and split) are below what 10k records give a
direction, so both sizes write the same number of rows and only the records read differ: that is what
"peak RSS independent of the record count" is about. `--all` raises the caps above the record count,
so every record is written (past 8,192 the references to the rows kept go to run files on disk).
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from PIL import Image

LANGS = ("en", "zh", "ja", "de")
WORDS = ["open", "file", "save", "window", "help", "folder", "print", "cancel", "search", "exit"]


def _jpeg(i: int) -> bytes:
    im = Image.new("RGB", (48, 24), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    return buf.getvalue()


def make_tree(root: Path, records: int) -> Path:
    """A MIT-10M-layout tree of ``records`` records, 3 per image (5% of the images in test)."""
    root.mkdir(parents=True, exist_ok=True)
    zips = {sl: zipfile.ZipFile(root / f"{sl}.zip", "w", compression=zipfile.ZIP_STORED) for sl in LANGS}
    files = {
        (split, sl): (root / split / f"{sl.upper()}.jsonl") for split in ("train", "test") for sl in LANGS
    }
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    handles = {k: p.open("w", encoding="utf-8") for k, p in files.items()}
    n = 0
    try:
        for i in range((records + 2) // 3):
            sl = LANGS[i % len(LANGS)]
            split = "test" if (i // len(LANGS)) % 20 == 0 else "train"
            img = f"{sl}/{i:08d}.jpg"
            zips[sl].writestr(img, _jpeg(i))
            words = " ".join(WORDS[(i // 7 + k) % len(WORDS)] for k in range(1 + i % 3))
            for tl in (t for t in LANGS if t != sl):
                if n == records:
                    break
                rec = {"id": n, "img": img, "src_lang": sl, "tgt_lang": tl, "src_text": f"{words} {i}",
                       "tgt_text": f"{tl}: {words[::-1]} {i}", "split": split, "cate_id": i % 28,
                       "cate_name": f"cat{i % 28}", "difficulty": ["easy", "medium", "hard"][i % 3],
                       "box_cnt": 1 + i % 5}  # fmt: skip
                handles[(split, sl)].write(json.dumps(rec) + "\n")
                n += 1
    finally:
        for h in handles.values():
            h.close()
        for z in zips.values():
            z.close()
    return root


def run_import(tree: Path, all_rows: bool, train_cap: int, eval_cap: int) -> dict[str, float]:
    """Import ``tree`` in this process; the figures as a dict."""
    from mnaft_core.data.build import build_dataset
    from mnaft_core.data.config import DataConfig

    caps = (10_000_000, 1_000_000) if all_rows else (train_cap, eval_cap)
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": s, "tgt": t} for s in LANGS for t in LANGS if s != t],
            "sources": [{"kind": "mit10m", "path": str(tree)}],
            "split": {"max_train_per_direction": caps[0], "max_eval_per_direction": caps[1]},
        }
    )
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        build = build_dataset(cfg, progress=False, out_dir=Path(out))
        wall = time.perf_counter() - t0
        rows = sum(sum(c.values()) for c in build.counts.values())
        size = build.path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"wall_s": wall, "rows_written": rows, "parquet_mib": size / 2**20, "peak_rss_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="record counts, comma-separated")
    ap.add_argument("--train-cap", type=int, default=500, help="train rows kept per direction")
    ap.add_argument("--eval-cap", type=int, default=20, help="val and test rows kept per direction")
    ap.add_argument("--all", action="store_true", help="caps above the record count: write every record")
    ap.add_argument("--keep", type=Path, help="generate the trees here and keep them")
    ap.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # child process: import one tree
    args = ap.parse_args()
    if args.run:
        print(json.dumps(run_import(args.run, args.all, args.train_cap, args.eval_cap)))
        return
    base = args.keep or Path(tempfile.mkdtemp(prefix="mnaft-bench-data-"))
    print("| records | mode | wall (s) | records/s | rows written | rows/s | peak RSS (MiB) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n in (int(x) for x in args.sizes.split(",")):
        tree = base / f"mit10m-{n}"
        if not (tree / "train").is_dir():
            make_tree(tree, n)
        cmd = [
            sys.executable,
            "-m",
            "bench.data_import",
            "--run",
            str(tree),
            *("--train-cap", str(args.train_cap), "--eval-cap", str(args.eval_cap)),
            *(["--all"] if args.all else []),
        ]
        res = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        )
        mode = "all rows" if args.all else f"caps {args.train_cap}/{args.eval_cap}"
        w = res["wall_s"]
        cells = [f"{n:,}", mode, f"{w:.1f}", f"{n / w:,.0f}", f"{res['rows_written']:,}",
                 f"{res['rows_written'] / w:,.0f}", f"{res['peak_rss_mib']:.0f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
