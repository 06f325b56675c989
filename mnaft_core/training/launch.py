"""Data-parallel fine-tuning under torchrun: `python -m torch.distributed.run --nproc_per_node N -m
mnaft_core.training.launch SPEC.json`, one process per GPU (or CPU processes on gloo).

SPEC.json names the model config, the fine-tuning config, the dataset folder, an optional mask file,
the run folder (checkpoints) and the output folder. Each rank loads the model on its own device and
trains on its slice of every batch (DDP, or FSDP2 with ``sharding: fsdp``); rank 0 writes the
checkpoint and ``metrics.json`` (under DDP after checking that every rank ended with the same weights;
under FSDP2 one copy exists, gathered on rank 0).

Across nodes, run the same module under torchrun with a c10d rendezvous (``--nnodes N
--rdzv-backend c10d --rdzv-endpoint HOST:PORT``); ``flows/k8s`` holds the Kubernetes job template.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
    data_ref: str = ""  # the dataset's artifact key, for the model card

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> LaunchSpec:
        return cls(**json.loads(path.read_text()))


@dataclass(frozen=True)
class Rendezvous:
    """One node's part in a multi-node run (c10d rendezvous), as the Kubernetes job template sets it.

    Node 0 runs the Prefect flow (the finetune task writes the spec, then joins as a node); the other
    nodes wait for that spec on the shared volume and join the same rendezvous (``--follow``). Every
    path in the spec is on the shared volume, so which node's process gets global rank 0 does not matter.
    """

    nodes: int
    node_index: int
    endpoint: str  # host:port of node 0, where the rendezvous store runs
    node_addr: str  # this node's resolvable address
    run_id: str  # one rendezvous per flow run
    shared_dir: Path

    ENV = ("MNAFT_NODES", "MNAFT_NODE_INDEX", "MNAFT_SHARED_DIR", "PREFECT__FLOW_RUN_ID")
    K8S_ENV = ("MNAFT_JOB_NAME", "MNAFT_RDZV_SERVICE")  # unless MNAFT_RDZV_ENDPOINT and MNAFT_NODE_ADDR

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Rendezvous:
        env = dict(os.environ) if env is None else env
        direct = bool(env.get("MNAFT_RDZV_ENDPOINT") and env.get("MNAFT_NODE_ADDR"))
        missing = [k for k in cls.ENV + (() if direct else cls.K8S_ENV) if not env.get(k)]
        if missing:
            raise RuntimeError(
                f"multi-node fine-tuning needs {', '.join(missing)} in the environment: run it from the "
                "Kubernetes work pool of flows/k8s/finetune-multinode.json (see its README section)"
            )
        job, svc = env.get("MNAFT_JOB_NAME", ""), env.get("MNAFT_RDZV_SERVICE", "")
        port = env.get("MNAFT_RDZV_PORT", "29400")
        index = int(env["MNAFT_NODE_INDEX"])
        # outside Kubernetes (bare metal, Slurm) the two addresses can be given directly
        endpoint = env.get("MNAFT_RDZV_ENDPOINT") or f"{job}-0.{svc}:{port}"
        addr = env.get("MNAFT_NODE_ADDR") or f"{job}-{index}.{svc}"
        return cls(int(env["MNAFT_NODES"]), index, endpoint, addr, env["PREFECT__FLOW_RUN_ID"],
                   Path(env["MNAFT_SHARED_DIR"]))  # fmt: skip

    @property
    def spec_path(self) -> Path:
        return self.shared_dir / "launch" / self.run_id / "launch.json"

    def torchrun_args(self) -> list[str]:
        return [f"--nnodes={self.nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={self.endpoint}",
                f"--rdzv-id={self.run_id}", f"--local-addr={self.node_addr}",
                f"--rdzv-conf=is_host={str(self.node_index == 0).lower()}"]  # fmt: skip


def torchrun_command(spec_path: Path, processes: int, rendezvous: Rendezvous | None = None) -> list[str]:
    """The command that runs ``spec_path`` on ``processes`` processes per node (this node alone, or the
    nodes of ``rendezvous``)."""
    where = ["--standalone"] if rendezvous is None else rendezvous.torchrun_args()
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={processes}",
            "-m", "mnaft_core.training.launch", str(spec_path)]  # fmt: skip


def lead(spec: LaunchSpec, processes: int, rendezvous: Rendezvous, **kw: Any) -> int:
    """Node 0 of a multi-node run: publish the spec to the other nodes, then train with them."""
    nodes = int(spec.finetune.get("nodes", 1))
    if rendezvous.nodes != nodes:
        raise RuntimeError(f"finetune.nodes is {nodes} but the job has MNAFT_NODES={rendezvous.nodes} pods")
    paths = {"dataset_dir": spec.dataset_dir, "run_dir": spec.run_dir, "out_dir": spec.out_dir,
             "mask_path": spec.mask_path}  # fmt: skip
    shared = rendezvous.shared_dir.resolve()
    for name, path in paths.items():
        if path is not None and not Path(path).resolve().is_relative_to(shared):
            raise RuntimeError(
                f"launch spec {name} {path} is not on the shared volume {shared}: every node reads it "
                "(set MNAFT_CACHE under MNAFT_SHARED_DIR, as the job template does)"
            )
    rendezvous.spec_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = rendezvous.spec_path.with_suffix(".partial")
    spec.write(tmp).rename(rendezvous.spec_path)  # followers never read a half-written spec
    return run_torchrun(rendezvous.spec_path, processes, rendezvous=rendezvous, **kw)


def follow(rendezvous: Rendezvous, timeout_s: float = 3600.0, poll_s: float = 2.0) -> int:
    """Nodes 1..N-1: wait for node 0's spec on the shared volume, then join the rendezvous."""
    deadline = time.monotonic() + timeout_s
    while not rendezvous.spec_path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no launch spec at {rendezvous.spec_path} after {timeout_s:.0f} s")
        time.sleep(poll_s)
    spec = LaunchSpec.read(rendezvous.spec_path)
    processes = int(spec.finetune.get("processes", 1))
    return subprocess.call(torchrun_command(rendezvous.spec_path, processes, rendezvous))


def run_torchrun(
    spec_path: Path,
    processes: int,
    *,
    on_progress: ProgressFn | None = None,
    output: IO[str] | None = None,
    poll_s: float = 1.0,
    rendezvous: Rendezvous | None = None,
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
    proc = subprocess.Popen(torchrun_command(spec_path, processes, rendezvous), stdout=output, stderr=err)
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


def _replicas_agree(module: torch.nn.Module) -> None:
    """Every DDP replica ended training with the same weights (a collective)."""
    gathered = gather_checksums(_checksum(module, collective_device()))
    if not all(torch.allclose(g, gathered[0], rtol=1e-6, atol=1e-6) for g in gathered):
        raise RuntimeError(f"ranks ended with different weights: {[g.tolist() for g in gathered]}")


def main(spec_path: str) -> None:
    spec = LaunchSpec.read(Path(spec_path))
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    try:
        model_cfg = ModelConfig.model_validate(spec.model)
        cfg = FinetuneConfig.model_validate(spec.finetune)
        sharding = resolve_sharding(cfg.method, cfg.sharding)
        device = torch.device("cuda", local) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(local)
        # FSDP2 loads on the CPU (float32 master weights for `dtype: auto`) and moves each block's shard
        # to the GPU as it shards it: the whole model never sits on one GPU
        load_on = torch.device("cpu") if sharding == "fsdp" else device
        loaded = load_mllm(model_cfg.model_copy(update={"device": str(load_on)}))
        samples = load_samples(spec.dataset_dir, "train", limit=spec.max_train or None)
        mask = NeuronMask.load(spec.mask_path) if spec.mask_path else None
        check = _replicas_agree if sharding == "ddp" else None  # FSDP2: one copy, nothing to compare
        metrics = finetune(loaded, samples, cfg, mask, Path(spec.run_dir), Path(spec.out_dir),
                           mask_ref=spec.mask_ref, data_ref=spec.data_ref, progress=rank == 0, device=device,
                           after_training=check)  # fmt: skip
        if rank == 0:
            metrics["processes"] = dist.get_world_size()
            metrics["sharding"] = sharding
            (Path(spec.out_dir) / METRICS).write_text(json.dumps(metrics, indent=2))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1:] == ["--follow"]:  # a follower pod of the multi-node job template
        raise SystemExit(follow(Rendezvous.from_env(), float(os.environ.get("MNAFT_FOLLOW_TIMEOUT_S", 3600))))
    if len(sys.argv) != 2:
        raise SystemExit(
            "usage: python -m torch.distributed.run ... -m mnaft_core.training.launch SPEC.json\n"
            "       python -m mnaft_core.training.launch --follow   (multi-node: nodes 1..N-1)"
        )
    main(sys.argv[1])
