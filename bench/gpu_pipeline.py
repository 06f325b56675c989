"""A mini fine-tuning pipeline through torchrun: rendered data -> tiny Qwen2-VL -> LoRA and full FT.

    python -m bench.gpu_pipeline --device cuda --processes 1 --json out.json

Runs ``mnaft_core.training.launch`` under torchrun exactly as the finetune stage does (NCCL on CUDA,
gloo on CPU): it exercises process-group init, DDP / FSDP2 (with more than one process), the
collectives' devices (the checksum all_gather) and rank 0's export. NCCL refuses two ranks on one GPU,
so on a single GPU use ``--processes 1``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from mnaft_core.data.build import build_dataset, write_dataset
from mnaft_core.data.config import DataConfig
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.tiny import save_tiny
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.launch import METRICS, LaunchSpec, run_torchrun

WORDS = ["Open", "Save", "Close", "Help", "Print", "Cancel", "Search", "Quit", "Copy", "Paste"]


def run(device: str, processes: int, methods: list[str], root: Path) -> list[dict[str, Any]]:
    tsv = root / "pairs.tsv"
    tsv.write_text("src_text\ttgt_text\n" + "".join(f"{w}\tdas {w[::-1].lower()}\n" for w in WORDS))
    data = DataConfig.model_validate({
        "directions": [{"src": "en", "tgt": "de"}],
        "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
        "split": {"val_fraction": 0.0, "test_fraction": 0.0},
        "render": {"height": 32, "max_width": 96, "max_lines": 1, "font_size": [14, 16]},
    })  # fmt: skip
    write_dataset(build_dataset(data, progress=False), root / "data")
    model = save_tiny("qwen2-vl", root / "tiny")
    rows = []
    for method in methods:
        out = root / method
        out.mkdir()
        cfg = FinetuneConfig(method=method, steps=3, batch_size=4, warmup_steps=0, lr=1e-2,  # type: ignore[arg-type]
                             checkpoint_every=2, processes=processes)  # fmt: skip
        model_cfg = ModelConfig(name_or_path=str(model), device=device).model_dump(mode="json")
        spec = LaunchSpec(model_cfg, cfg.model_dump(mode="json"), str(root / "data"), str(out / "run"),
                          str(out / "out"))  # fmt: skip
        t0 = time.perf_counter()
        with (out / "torchrun.log").open("w") as log:
            code = run_torchrun(spec.write(out / "spec.json"), processes, output=log)
        row: dict[str, Any] = {"method": method, "processes": processes, "exit_code": code,
                               "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
        if code == 0:
            metrics = json.loads((out / "out" / METRICS).read_text())
            row.update({k: metrics.get(k) for k in ("steps", "final_loss", "processes", "sharding")})
        else:
            row["log_tail"] = (out / "torchrun.log").read_text()[-2000:]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--methods", default="lora,full")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mnaft-gpu-pipeline-") as tmp:
        rows = run(args.device, args.processes, args.methods.split(","), Path(tmp))
    args.json.write_text(json.dumps({"device": args.device, "rows": rows}, indent=2))
    if any(r["exit_code"] != 0 for r in rows):
        raise SystemExit(f"a torchrun run failed: {args.json}")


if __name__ == "__main__":
    main()
