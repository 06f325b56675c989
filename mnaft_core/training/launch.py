"""Data-parallel fine-tuning under torchrun: `python -m torch.distributed.run --nproc_per_node N -m
mnaft_core.training.launch SPEC.json`, one process per GPU (or CPU processes on gloo).

SPEC.json names the model config, the fine-tuning config, the dataset folder, an optional mask file,
the run folder (checkpoints) and the output folder. Each rank loads the model on its own device and
trains on its slice of every batch (DDP, or FSDP2 with ``sharding: fsdp``); rank 0 writes the
checkpoint and ``metrics.json``, after checking that every rank ended with the same weights.

Across nodes, run the same module under torchrun with a c10d rendezvous (``--nnodes N
--rdzv-backend c10d --rdzv-endpoint HOST:PORT``); ``flows/k8s`` holds the Kubernetes job template.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import torch
import torch.distributed as dist

from mnaft_core._base import ProgressFn
from mnaft_core.data.dataset import load_samples
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.selection.mask import NeuronMask
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.finetune import finetune
from mnaft_core.training.parallel import check_collective, collective_device, resolve_sharding
from mnaft_core.training.trainer import last_logged_step

METRICS = "metrics.json"


@dataclass(frozen=True)
class LaunchSpec:
    model: dict[str, Any]
    finetune: dict[str, Any]
    dataset_dir: str
    run_dir: str
    out_dir: str
    mask_path: str | None = None
    mask_ref: str = ""
    max_train: int = 0

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> LaunchSpec:
        return cls(**json.loads(path.read_text()))


def torchrun_command(spec_path: Path, processes: int) -> list[str]:
    """The command that runs ``spec_path`` on ``processes`` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "mnaft_core.training.launch", str(spec_path)]  # fmt: skip


def run_torchrun(
    spec_path: Path,
    processes: int,
    *,
    on_progress: ProgressFn | None = None,
    output: IO[str] | None = None,
    poll_s: float = 1.0,
) -> int:
    """Run ``spec_path`` under torchrun and return its exit code.

    The ranks cannot call back into this process, so progress is read from the metrics log that rank 0
    appends to in the spec's run folder, every ``poll_s`` seconds. ``output`` takes torchrun's stdout and
    stderr (default: this process's). If this process is interrupted, the ranks are stopped too; their
    checkpoints stay for a resume.
    """
    spec = LaunchSpec.read(spec_path)
    total = int(spec.finetune.get("steps", 0))
    err = subprocess.STDOUT if output is not None else None
    proc = subprocess.Popen(torchrun_command(spec_path, processes), stdout=output, stderr=err)
    seen = 0
    try:
        while True:
            try:
                code: int | None = proc.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                code = None
            step = last_logged_step(Path(spec.run_dir))
            if on_progress is not None and step > seen:
                seen = step
                on_progress(step, total)
            if code is not None:
                return code
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _checksum(model: torch.nn.Module, device: torch.device) -> torch.Tensor:
    """A cheap fingerprint of the weights that training may change, equal across ranks iff in sync.

    Built on ``device``: the collective that compares it needs CUDA tensors on NCCL.
    """
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for p in model.parameters():
        total[0] += p.detach().double().sum().to(device)
        total[1] += p.detach().double().abs().sum().to(device)
    return total


def gather_checksums(sums: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's checksum (a collective); refuses a tensor the backend cannot take."""
    check_collective(sums)
    gathered = [torch.zeros_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    return gathered


def main(spec_path: str) -> None:
    spec = LaunchSpec.read(Path(spec_path))
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    try:
        model_cfg = ModelConfig.model_validate(spec.model)
        if cuda:
            torch.cuda.set_device(local)
            model_cfg = model_cfg.model_copy(update={"device": f"cuda:{local}"})
        cfg = FinetuneConfig.model_validate(spec.finetune)
        loaded = load_mllm(model_cfg)
        samples = load_samples(spec.dataset_dir, "train", limit=spec.max_train or None)
        mask = NeuronMask.load(spec.mask_path) if spec.mask_path else None
        metrics = finetune(loaded, samples, cfg, mask, Path(spec.run_dir), Path(spec.out_dir),
                           mask_ref=spec.mask_ref, progress=rank == 0)  # fmt: skip
        gathered = gather_checksums(_checksum(loaded.model, collective_device()))
        if rank == 0:
            agree = all(torch.allclose(g, gathered[0], rtol=1e-6, atol=1e-6) for g in gathered)
            if not agree:
                raise RuntimeError(f"ranks ended with different weights: {[g.tolist() for g in gathered]}")
            metrics["processes"] = dist.get_world_size()
            metrics["sharding"] = resolve_sharding(cfg.method, cfg.sharding)
            (Path(spec.out_dir) / METRICS).write_text(json.dumps(metrics, indent=2))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m torch.distributed.run ... -m mnaft_core.training.launch SPEC.json")
    main(sys.argv[1])
