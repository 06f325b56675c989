"""Training-step cost of mnaft vs full fine-tuning vs LoRA (r=8, r=16) on one randomly initialised model.

    python -m bench.train_step --size small --device cpu          # CPU, ~40M-parameter Qwen2-VL
    python -m bench.train_step --size 2b --device cuda --bf16      # Qwen2-VL-2B-size config, GPU

Each method runs in its own process, so peak-memory figures do not leak between methods.
Reports per method: median step time, peak memory (CUDA: max allocated; CPU: peak RSS growth),
trainable parameters, optimizer-state bytes, and (CUDA) model FLOP utilisation. The mnaft mask selects
``--share`` of the neurons of every MLP, as LAPE's 1% + agnostic neurons do in the selected layers.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
import transformers as T

from mnaft_core.models.adapters import neuron_sites
from mnaft_core.selection.mask import NeuronMask, SiteMask
from mnaft_core.training.config import FinetuneConfig, LoraSettings
from mnaft_core.training.methods import prepare
from mnaft_core.training.trainer import optimizer_state_bytes

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {  # for bench/gpu_check.sh --dry-run: seconds on a CPU
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512},
        "vision": {"depth": 2, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 4,
                   "patch_size": 8, "spatial_merge_size": 2, "temporal_patch_size": 2},
        "batch": 2, "text_len": 16, "image": (16, 64),
    },
    "small": {
        "text": {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6,
                 "num_attention_heads": 6, "num_key_value_heads": 2, "vocab_size": 8000},
        "vision": {"depth": 6, "embed_dim": 256, "hidden_size": 384, "num_heads": 4, "mlp_ratio": 4,
                   "patch_size": 8, "spatial_merge_size": 2, "temporal_patch_size": 2},
        "batch": 8, "text_len": 48, "image": (32, 256),
    },
    "2b": {  # Qwen2-VL-2B-Instruct's shapes
        "text": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                 "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936},
        "vision": {"depth": 32, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16, "mlp_ratio": 4,
                   "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        "batch": 8, "text_len": 128, "image": (112, 448),
    },
}  # fmt: skip


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2-VL's split of a head's rotary half into (time, height, width): [16, 24, 24] at 128."""
    half = head_dim // 2
    return [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]


def build(size: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    spec = SIZES[size]
    vocab = spec["text"]["vocab_size"]
    ids = {"image_token_id": vocab - 1, "video_token_id": vocab - 2, "vision_start_token_id": vocab - 3,
           "vision_end_token_id": vocab - 4}  # fmt: skip
    head = spec["text"]["hidden_size"] // spec["text"]["num_attention_heads"]
    mrope = mrope_section(head)
    cfg = T.Qwen2VLConfig(
        text_config={**spec["text"], "rope_parameters": {"rope_type": "default", "mrope_section": mrope}},
        vision_config=spec["vision"],
        **ids,
    )
    return T.Qwen2VLForConditionalGeneration(cfg), spec


def batch(spec: dict[str, Any], device: torch.device, vocab: int) -> dict[str, torch.Tensor]:
    b, n = spec["batch"], spec["text_len"]
    h, w = spec["image"]
    p, m, t = (
        spec["vision"]["patch_size"],
        spec["vision"]["spatial_merge_size"],
        spec["vision"]["temporal_patch_size"],
    )
    gh, gw = h // p, w // p
    n_img = gh * gw // (m * m)
    ids = torch.randint(0, vocab - 10, (b, n + n_img))
    ids[:, 1 : 1 + n_img] = vocab - 1
    labels = ids.clone()
    labels[:, : 1 + n_img + n // 2] = -100
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "mm_token_type_ids": (ids == vocab - 1).long().to(device),
        "pixel_values": torch.randn(b * gh * gw, 3 * t * p * p, device=device),
        "image_grid_thw": torch.tensor([[1, gh, gw]] * b, device=device),
    }


def random_mask(
    model: torch.nn.Module, share: float, modules: str, layers: str = "all", seed: int = 0
) -> NeuronMask:
    """``share`` of the neurons of every MLP in ``modules``; ``layers`` = all, or the top / bottom half of
    each module's layers (selection keeps half of them by default: ``select.layer_fraction: 0.5``)."""
    rng = np.random.default_rng(seed)
    sites = {}
    all_sites = neuron_sites(model)
    depth = {m: sum(1 for s in all_sites if s.module == m) for m in {s.module for s in all_sites}}
    for s in all_sites:
        if s.module not in modules.split(","):
            continue
        kept = math.ceil(depth[s.module] / 2)
        if (layers == "top" and s.layer < depth[s.module] - kept) or (layers == "bottom" and s.layer >= kept):
            continue
        w = s.width(model)
        k = max(1, round(share * w))
        chosen = np.sort(rng.choice(w, k, replace=False)).astype(np.int32)
        half = k // 2
        sites[s.path] = SiteMask(s.module, s.layer, w, agnostic=chosen[:half], specific={"de": chosen[half:]})
    return NeuronMask("bench", sites)


def mlp_params(model: torch.nn.Module) -> int:
    total = 0
    params = dict(model.named_parameters())
    for s in neuron_sites(model):
        total += sum(params[n].numel() for n in s.parameter_slices(model))
    return total


def measure(method: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    model, spec = build(args.size)
    dtype = torch.bfloat16 if args.bf16 and device.type == "cuda" else torch.float32
    model = model.to(device, dtype)
    vocab = spec["text"]["vocab_size"]
    # lora-r16 = LoRA on the language model (the usual setting); lora-r16-both = also on the vision tower,
    # the same coverage as an mnaft mask over both modules
    lora_r = int(method.split("-")[1].removeprefix("r")) if method.startswith("lora") else 16
    targets = LoraSettings().target_modules
    if method.endswith("-both"):
        targets = (
            r".*(language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
            r"|visual\.blocks.*\.(qkv|proj|fc1|fc2))$"
        )
    lora = LoraSettings(r=lora_r, alpha=2 * lora_r, target_modules=targets)
    cfg = FinetuneConfig(method=method.split("-")[0], lora=lora)  # type: ignore[arg-type]
    mask = random_mask(model, args.share, args.mask_modules, args.mask_layers) if method == "mnaft" else None
    n_mlp = mlp_params(model)
    t = prepare(model, cfg, mask, None)
    params = [p for _, p in t.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=device.type == "cuda")
    inputs = batch(spec, device, vocab)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    t.activate(["de"])
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = t.module(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    n_params = sum(p.numel() for p in t.module.parameters())
    tokens = inputs["input_ids"].numel()
    row = {
        "method": method,
        "step_s": step,
        "trainable_params": sum(p.numel() for p in params),
        "optimizer_state_bytes": optimizer_state_bytes(opt),
        "params": n_params,
        "mlp_params": n_mlp,
        "tokens_per_s": tokens / step,
    }
    if device.type == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        peak = 989e12  # dense bf16 peak of an H100/H200 SXM
        row["mfu"] = 6 * n_params * tokens / step / peak
    else:
        row["peak_rss_growth_gib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 2**20
    del t, model, opt
    gc.collect()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--share", type=float, default=0.02, help="share of each MLP's neurons in the mnaft mask")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mask-modules", default="vision,language", help="modules the mnaft mask covers")
    ap.add_argument(
        "--mask-layers",
        choices=("all", "top", "bottom"),
        default="all",
        help="layers of each module the mnaft mask covers: all, or the top / bottom half",
    )
    ap.add_argument("--methods", default="mnaft,full,lora-r8,lora-r16,lora-r16-both")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one method in this process
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.one:
        print(json.dumps(measure(args.one, args, device)))
        return
    rows = []
    for m in args.methods.split(","):
        cmd = [sys.executable, "-m", "bench.train_step", *sys.argv[1:], "--one", m]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:  # e.g. a full fine-tune that does not fit: recorded, the others still run
            rows.append({"method": m, "error": done.stderr.strip().splitlines()[-3:]})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    by = {r["method"]: r for r in rows if "error" not in r}
    checks = {}
    if {"mnaft", "full", "lora-r16"} <= set(by):
        mn, full, lora = by["mnaft"], by["full"], by["lora-r16"]
        share = mn["trainable_params"] / mn["mlp_params"]
        checks = {
            "step <= full": mn["step_s"] <= full["step_s"],
            "step <= 1.1 x lora-r16": mn["step_s"] <= 1.1 * lora["step_s"],
            "optimizer bytes <= (selected MLP share + 1%) of full": mn["optimizer_state_bytes"]
            <= (share * mn["mlp_params"] / full["trainable_params"] + 0.01) * full["optimizer_state_bytes"],
        }
        if "peak_mem_gib" in mn:
            checks["peak memory <= 1.1 x lora-r16"] = mn["peak_mem_gib"] <= 1.1 * lora["peak_mem_gib"]
    report = {
        "size": args.size,
        "device": str(device),
        "bf16": args.bf16,
        "mask": {"modules": args.mask_modules, "layers": args.mask_layers, "share": args.share},
        "rows": rows,
        "checks": checks,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
