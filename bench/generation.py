"""Image-translation throughput: the MLLM (one step, batched greedy with KV cache) vs the OCR -> MT cascade.

    python -m bench.generation [--model embedded:organism] [--samples 64] [--batch-size 16]

Reads test samples from the newest data artifact in ./mnaft-store (or --data), times each system twice
(the first call warms up) and prints samples/s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mnaft_core.data.dataset import load_samples
from mnaft_core.evaluation.mt import NllbTranslator
from mnaft_core.evaluation.ocr import OcrConfig, make_ocr
from mnaft_core.evaluation.systems import Generation, MllmDirect, OcrMtCascade, System, inputs_of
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm, resolve
from storage import ArtifactStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:organism")
    ap.add_argument("--mt", default="embedded:nllb-organism")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--samples", type=int, default=64, help="test samples in all")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    if args.data is None:
        store = ArtifactStore("./mnaft-store")
        args.data = store.open("data", store.manifests("data")[-1].key).local_dir()
    samples = load_samples(args.data, "test")[: args.samples]
    gen = Generation(max_new_tokens=24, batch_size=args.batch_size, progress=True)
    loaded = load_mllm(ModelConfig(name_or_path=args.model))
    engine = make_ocr(OcrConfig(), sorted({s.script for s in samples}))
    mt = NllbTranslator(
        resolve(args.mt), device=str(loaded.device), batch_size=args.batch_size, max_new_tokens=24
    )
    systems: list[System] = [MllmDirect("mllm (direct)", loaded.model, loaded.processor, gen),
               OcrMtCascade("ocr+mt cascade", engine, mt)]  # fmt: skip
    # the images are decoded inside the timed call, as evaluation does
    runs = {s.name: (lambda s=s: s.translate(inputs_of(samples))) for s in systems}
    print(
        f"model {args.model}  device {loaded.device}  threads {torch.get_num_threads()}"
        f"  batch {args.batch_size}"
    )
    for name, fn in runs.items():
        fn()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        print(f"{name:16s} {len(samples) / dt:7.1f} samples/s  ({dt:.1f} s for {len(samples)})")


if __name__ == "__main__":
    main()
