"""The runs the equivalence test compares, and a torchrun entry point that runs them on every rank.

``python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.mnaft_core.training.ddp_cases
OUT`` trains every case of ``CASES`` (and the interrupted-then-resumed variant of those in ``RESUMED``)
and rank 0 writes each run's final trainable weights to ``OUT/<case>.safetensors``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from mnaft_core.models.tiny import tiny_model
from mnaft_core.selection.mask import model_fingerprint
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.methods import prepare, trainable_state
from mnaft_core.training.trainer import train, world

# 10 + 7 samples, batches of 3: each direction ends with a 1-sample batch, where one of two ranks has
# nothing (it must still join the reduction with weight zero)
DIRS = ["en-de"] * 10 + ["zh-Hans-en"] * 7
TOKENS = torch.randint(0, 290, (len(DIRS), 9), generator=torch.Generator().manual_seed(0))

CASES: dict[str, dict[str, Any]] = {
    "mnaft-ddp": {"method": "mnaft", "sharding": "ddp", "grad_accum": 2},
    "mnaft-ddp-ckpt": {"method": "mnaft", "sharding": "ddp", "gradient_checkpointing": True},
    "mnaft-fsdp": {"method": "mnaft", "sharding": "fsdp"},
    "lora-ddp": {"method": "lora", "sharding": "ddp", "grad_accum": 2},
    "full-fsdp": {"method": "full", "sharding": "fsdp", "grad_accum": 2, "gradient_checkpointing": True},
    "full-ddp": {"method": "full", "sharding": "ddp"},
}
RESUMED = ("mnaft-ddp", "full-fsdp")  # killed after STOP steps, resumed from the checkpoint
STEPS, STOP = 6, 3


def collate(direction: str, ids: Sequence[int]) -> tuple[tuple[str, ...], dict[str, torch.Tensor]]:
    """Text-only micro-batches whose samples have different numbers of target tokens."""
    x = TOKENS[list(ids)]
    labels = x.clone()
    for row, i in enumerate(ids):
        labels[row, : 2 + i % 5] = -100
    src, tgt = ("en", "de") if direction == "en-de" else ("zh-Hans", "en")
    return (src, tgt), {"input_ids": x, "labels": labels}


def config(case: str, processes: int) -> FinetuneConfig:
    return FinetuneConfig.model_validate({"steps": STEPS, "batch_size": 3, "checkpoint_every": STOP,
                                          "warmup_steps": 1, "lr": 1e-2, "weight_decay": 0.1,
                                          "processes": processes, **CASES[case]})  # fmt: skip


def run(case: str, processes: int, run_dir: Path, stop_after: int | None = None) -> dict[str, torch.Tensor]:
    """One training run of ``case`` (in the current process group, if any); its final trainable weights."""
    from tests.mnaft_core.training.test_neuron_delta import _mask

    cfg = config(case, processes)
    torch.manual_seed(0)
    model = tiny_model("qwen2-vl")
    mask = _mask(model) if cfg.method == "mnaft" else None
    t = prepare(model, cfg, mask, model_fingerprint(model) if mask else None)
    train(t, DIRS, collate, cfg, run_dir, stop_after=stop_after, progress=False)
    return trainable_state(t)


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    try:
        rank, size = world()
        for case in CASES:
            runs: list[tuple[str, int | None]] = [(case, None)]
            if case in RESUMED:  # the same run dir twice: stopped after STOP steps, then resumed
                runs += [(f"{case}-resumed", STOP), (f"{case}-resumed", None)]
            for name, stop in runs:
                weights = run(case, size, out / "runs" / name, stop_after=stop)
                if rank == 0 and stop is None:
                    save_file(
                        {k: v.contiguous() for k, v in weights.items()}, str(out / f"{name}.safetensors")
                    )
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
