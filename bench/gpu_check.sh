#!/usr/bin/env bash
# The prepared GPU check: one JSON with training-step cost (mnaft, LoRA r16, full FT) of a random-init
# Qwen2-VL-2B-size model in bf16, the profiler's throughput ratio to a plain pass, and a mini pipeline
# through torchrun on CUDA. Fits in ~8 minutes on one H100/H200.
#
#   bash bench/gpu_check.sh [--out gpu_check.json]            # on a GPU machine
#   bash bench/gpu_check.sh --dry-run [--out dry.json]        # the same steps, tiny, on the CPU (CI)
#
# Targets (issue 16): mnaft peak memory <= 1.1 x LoRA r16, mnaft step <= 1.1 x LoRA r16,
# MFU of mnaft >= 40%, profiling >= 0.9 x plain. The JSON's "checks" say which were met.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=gpu_check.json
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT=$2; shift ;;
    *) echo "usage: bench/gpu_check.sh [--dry-run] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false HF_HUB_OFFLINE=1
WORK=$(mktemp -d -t mnaft-gpu-check-XXXX)
trap 'rm -rf "$WORK"' EXIT

if [ "$DRY" = 1 ]; then
  DEVICE=cpu; SIZE=tiny; DTYPE=float32; BF16=(); STEPS=(--steps 1 --warmup 1); PROCS=1
  PROFILE=(--samples 4 --repeats 1 --batch-size 4); PIPELINE=(--methods lora)
else
  $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --dry-run')"
  DEVICE=cuda; SIZE=2b; DTYPE=bfloat16; BF16=(--bf16); STEPS=(--steps 10 --warmup 3); PROCS=1
  PROFILE=(--samples 64 --repeats 3 --batch-size 16); PIPELINE=(--methods lora,full)
fi
START=$(date +%s)

echo "== training step ($SIZE, $DEVICE): mnaft, lora-r16, full" >&2
# each method in its own process (train_step's design); a full FT that does not fit is recorded as such
$PY -m bench.train_step --size "$SIZE" --device "$DEVICE" "${BF16[@]}" "${STEPS[@]}" \
  --methods mnaft,lora-r16,full > "$WORK/train.json" 2> "$WORK/train.err" \
  || { echo "train_step failed:" >&2; tail -20 "$WORK/train.err" >&2; echo '{"error": "train_step failed"}' > "$WORK/train.json"; }

echo "== profiler throughput vs a plain pass ($SIZE)" >&2
$PY - "$WORK/data" <<'PY'
import sys
from pathlib import Path
from bench.gpu_pipeline import WORDS
from mnaft_core.data.build import build_dataset, write_dataset
from mnaft_core.data.config import DataConfig
root = Path(sys.argv[1]).parent
tsv = root / "pairs.tsv"
tsv.write_text("src_text\ttgt_text\n" + "".join(f"{w} file\tdas {w[::-1].lower()}\n" for w in WORDS * 7))
cfg = DataConfig.model_validate({"directions": [{"src": "en", "tgt": "de"}],
    "sources": [{"kind": "table", "path": str(tsv), "src_lang": "en", "tgt_lang": "de"}],
    "split": {"val_fraction": 0.0, "test_fraction": 0.0},
    "render": {"height": 32, "max_width": 160, "max_lines": 1, "font_size": [14, 16]}})
write_dataset(build_dataset(cfg, progress=False), Path(sys.argv[1]))
PY
$PY -m bench.profile_overhead --size "$SIZE" --device "$DEVICE" --dtype "$DTYPE" --data "$WORK/data" \
  --taylor "${PROFILE[@]}" --json "$WORK/profile.json" > "$WORK/profile.txt" 2> "$WORK/profile.err" \
  || { echo "profile_overhead failed:" >&2; tail -20 "$WORK/profile.err" >&2; echo '{"error": "profile_overhead failed"}' > "$WORK/profile.json"; }

echo "== mini pipeline through torchrun ($DEVICE, $PROCS process)" >&2
$PY -m bench.gpu_pipeline --device "$DEVICE" --processes "$PROCS" "${PIPELINE[@]}" --json "$WORK/pipeline.json" \
  2> "$WORK/pipeline.err" || { echo "pipeline failed:" >&2; tail -20 "$WORK/pipeline.err" >&2; }
[ -f "$WORK/pipeline.json" ] || echo '{"error": "gpu_pipeline failed"}' > "$WORK/pipeline.json"

$PY - "$WORK" "$OUT" "$DRY" "$START" <<'PY'
import json, platform, sys, time
from pathlib import Path
import torch
work, out, dry, start = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
train = json.loads((work / "train.json").read_text())
profile = json.loads((work / "profile.json").read_text())
pipeline = json.loads((work / "pipeline.json").read_text())
by = {r["method"]: r for r in train.get("rows", []) if "error" not in r}
checks = {}
if {"mnaft", "lora-r16"} <= set(by):
    mn, lora = by["mnaft"], by["lora-r16"]
    checks["mnaft step <= 1.1 x lora-r16"] = mn["step_s"] <= 1.1 * lora["step_s"]
    if "peak_mem_gib" in mn:
        checks["mnaft peak memory <= 1.1 x lora-r16"] = mn["peak_mem_gib"] <= 1.1 * lora["peak_mem_gib"]
        checks["mnaft MFU >= 0.40"] = mn["mfu"] >= 0.40
if "ratio" in profile:
    checks["profiling >= 0.9 x plain"] = profile["ratio"] >= 0.9
checks["pipeline ran"] = bool(pipeline.get("rows")) and all(r["exit_code"] == 0 for r in pipeline["rows"])
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not dry else platform.processor() or "cpu"
report = {"dry_run": dry, "device": device, "torch": torch.__version__,
          "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": int(time.time()) - start,
          "train_step": train, "profile": profile, "pipeline": pipeline, "checks": checks}
out.write_text(json.dumps(report, indent=2))
print(json.dumps(checks, indent=2))
PY
echo "wrote $OUT" >&2
