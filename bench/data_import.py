"""Importing a MIT-10M-layout dataset: records/s and peak RSS at 10k and 100k records.

    python -m bench.data_import [--sizes 10000,100000] [--all] [--keep DIR]

Generates, per size, a tree in MIT-10M's published layout (`train/<LANG>.jsonl`, `test/<LANG>.jsonl`,
images in per-language zip archives `<lang>.zip`; 4 source languages, tiny JPEGs) and imports it with
the data stage (`build_dataset`), each size in a fresh process, reporting wall time, records read per
second, rows written per second and the process's peak RSS (ru_maxrss).

By default the data config keeps its caps (4,000 train / 200 val / 200 test rows per direction): the
import reads every record and writes the capped sample. `--all` raises the caps above the record count,
so every record is written too (then the rows kept for writing are held as references in memory).
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

LANGS = {"en": "zh", "zh": "en", "ja": "en", "de": "en"}  # source -> target, one JSONL file each
WORDS = ["open", "file", "save", "window", "help", "folder", "print", "cancel", "search", "exit"]


def _jpeg(i: int) -> bytes:
    im = Image.new("RGB", (48, 24), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    return buf.getvalue()


def make_tree(root: Path, records: int) -> Path:
    """A MIT-10M-layout tree with ``records`` records (95% train, 5% test), spread over LANGS."""
    root.mkdir(parents=True, exist_ok=True)
    zips = {sl: zipfile.ZipFile(root / f"{sl}.zip", "w", compression=zipfile.ZIP_STORED) for sl in LANGS}
    files = {
        (split, sl): (root / split / f"{sl.upper()}.jsonl") for split in ("train", "test") for sl in LANGS
    }
    for p in files.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    handles = {k: p.open("w", encoding="utf-8") for k, p in files.items()}
    try:
        for i in range(records):
            sl = list(LANGS)[i % len(LANGS)]
            split = "test" if (i // len(LANGS)) % 20 == 0 else "train"
            img = f"{sl}/{i:08d}.jpg"
            zips[sl].writestr(img, _jpeg(i))
            words = " ".join(WORDS[(i // 7 + k) % len(WORDS)] for k in range(1 + i % 3))
            rec = {"id": i, "img": img, "src_lang": sl, "tgt_lang": LANGS[sl], "src_text": f"{words} {i}",
                   "tgt_text": f"{words[::-1]} {i}", "split": split, "cate_id": i % 28,
                   "cate_name": f"cat{i % 28}", "difficulty": ["easy", "medium", "hard"][i % 3],
                   "box_cnt": 1 + i % 5}  # fmt: skip
            handles[(split, sl)].write(json.dumps(rec) + "\n")
    finally:
        for h in handles.values():
            h.close()
        for z in zips.values():
            z.close()
    return root


def run_import(tree: Path, all_rows: bool) -> dict[str, float]:
    """Import ``tree`` in this process; the figures as a dict."""
    from mnaft_core.data.build import build_dataset
    from mnaft_core.data.config import DataConfig

    split = {"max_train_per_direction": 10_000_000, "max_eval_per_direction": 1_000_000} if all_rows else {}
    cfg = DataConfig.model_validate(
        {
            "directions": [{"src": s, "tgt": t} for s, t in LANGS.items()],
            "sources": [{"kind": "mit10m", "path": str(tree)}],
            "split": split,
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
    ap.add_argument("--all", action="store_true", help="caps above the record count: write every record")
    ap.add_argument("--keep", type=Path, help="generate the trees here and keep them")
    ap.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # child process: import one tree
    args = ap.parse_args()
    if args.run:
        print(json.dumps(run_import(args.run, args.all)))
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
            *(["--all"] if args.all else []),
        ]
        res = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        )
        mode = "all rows" if args.all else "default caps"
        w = res["wall_s"]
        cells = [f"{n:,}", mode, f"{w:.1f}", f"{n / w:,.0f}", f"{res['rows_written']:,}",
                 f"{res['rows_written'] / w:,.0f}", f"{res['peak_rss_mib']:.0f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
