"""Profiling throughput against a plain pass of the same model over the same batches.

    python -m bench.profile_overhead [--model embedded:organism] [--data DATASET_DIR] [--taylor]
    python -m bench.profile_overhead --size 2b --device cuda --dtype bfloat16 [--taylor]   # GPU

``--size`` swaps the model for a randomly initialised Qwen2-VL with the shapes of ``bench.train_step``'s
sizes (``2b``: Qwen2-VL-2B-Instruct's widths and depths), keeping the organism's vocabulary, patch size
and processor, so the same rendered data drives it.

Plain = the profiler's own step (encode, forward; with --taylor also the backward to the inputs, the
image's pixels included, with frozen parameters: exactly the work Taylor importance needs) with no
statistics recorded and nothing written. Profiling = ``run_profile`` end to end into a fresh Zarr store
(layout, hooks, flushes, shard writes). Plain and profiling runs alternate ``--repeats`` times; the
ratio of the medians is reported, with the Zarr bytes written, the time the background writer spent
and the time the profiler waited for it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import torch

import mnaft_core.profiling.runner as runner
from mnaft_core.data.dataset import load_samples
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.profiling.runner import ProfileConfig, plan, run_profile
from mnaft_core.profiling.stats import ModuleRecorder
from mnaft_core.profiling.zarr_stats import ShardWriter
from storage import ArtifactStore


def _random_sized(loaded: Any, size: str, dtype: torch.dtype) -> Any:
    """The organism's processor in front of a random Qwen2-VL with ``SIZES[size]``'s widths and depths."""
    from bench.train_step import SIZES, mrope_section

    spec = SIZES[size]
    cfg = loaded.model.config.to_dict()
    text = {k: spec["text"][k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "num_key_value_heads")}  # fmt: skip
    cfg["text_config"].update(text)
    cfg["text_config"].pop("layer_types", None)  # one per layer: rebuilt for the new depth
    head = text["hidden_size"] // text["num_attention_heads"]
    cfg["text_config"]["rope_parameters"]["mrope_section"] = mrope_section(head)
    cfg["vision_config"].update(
        {k: spec["vision"][k] for k in ("depth", "embed_dim", "hidden_size", "num_heads", "mlp_ratio")}
    )
    config = type(loaded.model.config).from_dict(cfg)
    torch.manual_seed(0)
    model = type(loaded.model)(config).to(loaded.device, dtype)
    return type(loaded)(model, loaded.processor, f"random:{size}", loaded.device)


def _plain(loaded: Any, the_plan: runner.Plan, cfg: ProfileConfig) -> float:
    model, device = loaded.model, loaded.device
    model.eval()
    model.requires_grad_(False)
    hook = model.get_input_embeddings().register_forward_hook(lambda _m, _i, o: o.requires_grad_(True))
    t0 = time.perf_counter()
    for shard in the_plan.shards:
        modality = the_plan.conditions[shard.condition].modality
        samples = runner._shard_samples(the_plan, shard)
        for b in range(0, len(samples), cfg.batch_size):
            runner._step(model, loaded.processor, {}, samples[b : b + cfg.batch_size], modality, cfg, device)
    hook.remove()
    return time.perf_counter() - t0


class _KeptWriter(ShardWriter):
    """The runner's writer, kept for its timings (it measures its own write and wait seconds)."""

    last: ClassVar[ShardWriter | None] = None

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        _KeptWriter.last = self


class _CountedRecorder(ModuleRecorder):
    made: ClassVar[list[ModuleRecorder]] = []

    def __post_init__(self) -> None:
        super().__post_init__()
        _CountedRecorder.made.append(self)


def _statistics_bytes(recorders: list[ModuleRecorder]) -> tuple[int, int]:
    """(accumulators, scratch) bytes on the device: the totals kept per shard, the reused workspaces."""
    acc = sum(t.nbytes for r in recorders for t in (r._tokens, r._acc, r._taylor, *(r._samples or ())))
    scratch = sum(t.nbytes for r in recorders for t in (r._ws, r._tws) if t is not None)
    return acc, scratch


def _profile(loaded: Any, the_plan: runner.Plan, cfg: ProfileConfig) -> tuple[float, int, ShardWriter]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_profile(
            loaded.model, loaded.processor, the_plan, cfg, Path(tmp) / "stats.zarr", {}, progress=False
        )
        seconds = time.perf_counter() - t0
        nbytes = sum(f.stat().st_size for f in (Path(tmp) / "stats.zarr").rglob("*") if f.is_file())
    assert _KeptWriter.last is not None
    return seconds, nbytes, _KeptWriter.last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:organism")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", default=None, help="random Qwen2-VL of bench.train_step's sizes (small, 2b)")
    ap.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: newest data artifact)")
    ap.add_argument("--samples", type=int, default=64, help="samples per direction (the demo profiles 64)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--taylor", action="store_true")
    ap.add_argument("--chunk-tokens", type=int, default=ProfileConfig().chunk_tokens,
                    help="tokens per chunk of the statistics scratch (profile.chunk_tokens)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=5, help="alternating plain / profiling runs")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.data is None:
        store = ArtifactStore("./mnaft-store")
        if not store.manifests("data"):
            raise SystemExit("no data artifact in ./mnaft-store: run `mnaft data -c configs/demo.yaml` first")
        args.data = store.open("data", store.manifests("data")[-1].key).local_dir()
    cfg = ProfileConfig(
        max_samples_per_direction=args.samples,
        batch_size=args.batch_size,
        shard_size=args.samples,
        taylor=args.taylor,
        chunk_tokens=args.chunk_tokens,
    )
    the_plan = plan(load_samples(args.data, "train"), cfg)
    loaded = load_mllm(ModelConfig(name_or_path=args.model, device=args.device, dtype=args.dtype))
    if args.size:
        loaded = _random_sized(loaded, args.size, next(loaded.model.parameters()).dtype)
    runner.ShardWriter = _KeptWriter  # type: ignore[misc]
    runner.ModuleRecorder = _CountedRecorder  # type: ignore[misc]
    _plain(loaded, the_plan, cfg)  # warm-up
    _profile(loaded, the_plan, cfg)
    plain, prof, runs = [], [], []
    for _ in range(args.repeats):
        plain.append(_plain(loaded, the_plan, cfg))
        _CountedRecorder.made.clear()
        runs.append(_profile(loaded, the_plan, cfg))
        prof.append(runs[-1][0])
    n = sum(s.stop - s.start for s in the_plan.shards)
    p, q = statistics.median(plain), statistics.median(prof)
    _, nbytes, _ = runs[0]
    acc_b, scratch_b = _statistics_bytes(_CountedRecorder.made)  # the last run's recorders
    weights_b = sum(t.nbytes for t in loaded.model.parameters())
    write_s = statistics.median(w.write_seconds for _, _, w in runs)
    wait_s = statistics.median(w.wait_seconds for _, _, w in runs)
    dtype = next(loaded.model.parameters()).dtype
    print(
        f"model {loaded.source}  device {loaded.device}  dtype {dtype}  threads {torch.get_num_threads()}"
        f"  taylor {args.taylor}"
    )
    print(f"samples {n} (x{len(the_plan.shards)} shards)  batch {args.batch_size}  repeats {args.repeats}")
    print(f"plain    {n / p:8.1f} samples/s   runs {' '.join(f'{t:.2f}' for t in plain)} s")
    runs_s = " ".join(f"{t:.2f}" for t in prof)
    print(f"profile  {n / q:8.1f} samples/s   runs {runs_s} s   ratio {p / q:.3f}")
    print(
        f"zarr     {nbytes / 2**20:.2f} MiB in {len(the_plan.shards)} shards, written at "
        f"{nbytes / 2**20 / write_s:.1f} MiB/s in the background ({write_s / q:.1%} of profile time); "
        f"profiler waited {wait_s:.3f} s for it ({wait_s / q:.1%})"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({
            "model": loaded.source, "device": str(loaded.device), "dtype": str(dtype), "taylor": args.taylor,
            "samples": n, "batch_size": args.batch_size, "repeats": args.repeats,
            "plain_samples_per_s": n / p, "profile_samples_per_s": n / q, "ratio": p / q,
            "statistics_totals_mib": acc_b / 2**20, "statistics_scratch_mib": scratch_b / 2**20,
            "chunk_tokens": cfg.chunk_tokens,
        }, indent=2))  # fmt: skip
    widest = max(r.neurons for r in _CountedRecorder.made)
    bound = sum(4 * cfg.chunk_tokens * r.neurons * 4 for r in _CountedRecorder.made)
    print(
        f"memory   statistics on {loaded.device}: {acc_b / 2**20:.2f} MiB of totals + "
        f"{scratch_b / 2**20:.2f} MiB of reused scratch (model weights {weights_b / 2**20:.1f} MiB); "
        f"chunk {cfg.chunk_tokens} tokens: scratch bound 4 x chunk x width x 4 B = {bound / 2**20:.2f} MiB "
        f"over {len(_CountedRecorder.made)} modules (widest MLP {widest})"
    )


if __name__ == "__main__":
    main()
