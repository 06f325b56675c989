"""Profiling throughput against a plain pass of the same model over the same batches.

    python -m bench.profile_overhead [--model embedded:organism] [--data DATASET_DIR] [--taylor]

Plain = encode + forward (no grad); with --taylor, forward + backward to the input embeddings with
frozen parameters (what Taylor importance needs). Reports the throughput ratio, the Zarr bytes written
per shard and the Zarr write rate (time spent in write_shard).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import mnaft_core.profiling.runner as runner
from mnaft_core.data.dataset import load_samples
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.models.prompts import encode, model_inputs
from mnaft_core.profiling.runner import ProfileConfig, plan, run_profile
from storage import ArtifactStore


def _plain(loaded, the_plan, cfg: ProfileConfig) -> float:  # type: ignore[no-untyped-def]
    model, device = loaded.model, loaded.device
    model.eval()
    model.requires_grad_(False)
    hook = model.get_input_embeddings().register_forward_hook(lambda _m, _i, o: o.requires_grad_(True))
    t0 = time.perf_counter()
    for shard in the_plan.shards:
        cond = the_plan.conditions[shard.condition]
        samples = the_plan.samples[f"{cond.src}-{cond.tgt}"][shard.start : shard.stop]
        for b in range(0, len(samples), cfg.batch_size):
            chunk = samples[b : b + cfg.batch_size]
            ex = runner._examples(chunk, cond.modality, cfg.teacher_forcing)
            inputs = model_inputs(encode(loaded.processor, ex, with_target=cfg.teacher_forcing), device)
            if cfg.taylor:
                with torch.enable_grad():
                    model(**inputs).loss.backward()
            else:
                with torch.no_grad():
                    model(**inputs)
    hook.remove()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:organism")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: newest data artifact)")
    ap.add_argument("--samples", type=int, default=32, help="samples per direction")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--taylor", action="store_true")
    args = ap.parse_args()
    if args.data is None:
        store = ArtifactStore("./mnaft-store")
        args.data = store.open("data", store.manifests("data")[-1].key).local_dir()
    cfg = ProfileConfig(
        max_samples_per_direction=args.samples,
        batch_size=args.batch_size,
        shard_size=args.samples,
        taylor=args.taylor,
    )
    the_plan = plan(load_samples(args.data, "train"), cfg)
    loaded = load_mllm(ModelConfig(name_or_path=args.model))
    _plain(loaded, the_plan, cfg)  # warm-up
    plain = _plain(loaded, the_plan, cfg)
    writes: list[float] = []
    real_write = runner.write_shard

    def timed(*a, **k):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        real_write(*a, **k)
        writes.append(time.perf_counter() - t)

    runner.write_shard = timed
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_profile(
            loaded.model, loaded.processor, the_plan, cfg, Path(tmp) / "stats.zarr", {}, progress=False
        )
        prof = time.perf_counter() - t0
        nbytes = sum(f.stat().st_size for f in (Path(tmp) / "stats.zarr").rglob("*") if f.is_file())
    n = sum(s.stop - s.start for s in the_plan.shards)
    print(
        f"model {args.model}  device {loaded.device}  threads {torch.get_num_threads()}  taylor {args.taylor}"
    )
    print(f"samples {n} (x{len(the_plan.shards)} shards)  batch {args.batch_size}")
    print(f"plain    {n / plain:8.1f} samples/s")
    print(f"profile  {n / prof:8.1f} samples/s   ratio {plain / prof:.3f}")
    print(
        f"zarr     {nbytes / 2**20:.2f} MiB in {len(writes)} shards, "
        f"written at {nbytes / 2**20 / sum(writes):.1f} MiB/s "
        f"({sum(writes) / prof:.1%} of profile time)"
    )


if __name__ == "__main__":
    main()
