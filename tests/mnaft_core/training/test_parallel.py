"""DDP / FSDP2 training: collectives on the backend's device, and 2 gloo processes == 1 process.

Equivalence tolerance: the 2-process weights equal the 1-process weights to ``ATOL`` (max absolute
difference). Both compute the gradient of the same token mean; they differ only in float32 summation
order, which AdamW's normalisation lifts from ~1e-8 to ~5e-5 on near-zero gradient entries of a full
fine-tune. ``ATOL`` is 1/50 of one step's update (lr 1e-2). Resume after a kill is exact (0 difference).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from mnaft_core.models.tiny import tiny_model
from mnaft_core.training import launch, parallel
from mnaft_core.training.neuron_delta import NeuronDeltaModel
from tests.mnaft_core.training import ddp_cases
from tests.mnaft_core.training.test_neuron_delta import _mask

ATOL = 2e-4
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the default process group is NCCL on CUDA device 1 (no GPU needed)."""
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


def test_collectives_use_cuda_tensors_on_nccl(nccl: None) -> None:
    assert parallel.collective_device() == torch.device("cuda", 1)


def test_a_cpu_tensor_never_reaches_a_cuda_group(nccl: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def gathered(*_a: object, **_k: object) -> None:
        raise AssertionError("a CPU tensor reached an NCCL all_gather")

    monkeypatch.setattr(dist, "all_gather", gathered)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    with pytest.raises(ValueError, match="cpu tensor cannot take part in a collective of backend 'nccl'"):
        launch.gather_checksums(torch.zeros(2, dtype=torch.float64))


def test_collectives_use_cpu_tensors_on_gloo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "get_backend", lambda group=None: "gloo")
    assert parallel.collective_device() == torch.device("cpu")
    assert parallel.check_collective(torch.zeros(1)).device.type == "cpu"


def test_the_checksum_is_built_on_the_collective_device() -> None:
    model = torch.nn.Linear(3, 2)
    assert launch._checksum(model, torch.device("meta")).device.type == "meta"
    sums = launch._checksum(model, torch.device("cpu"))
    assert torch.allclose(sums[1], sum(p.detach().double().abs().sum() for p in model.parameters()))


def test_sharding_choice_and_mixed_precision() -> None:
    assert parallel.resolve_sharding("full", "auto") == "fsdp"
    assert parallel.resolve_sharding("mnaft", "auto") == "ddp"
    assert parallel.resolve_sharding("lora", "fsdp") == "fsdp"
    with pytest.raises(ValueError, match=r"finetune\.sharding must be"):
        parallel.resolve_sharding("mnaft", "zero3")
    bf16 = parallel.fsdp_mixed_precision(torch.device("cuda", 0), bf16=True)
    assert bf16.param_dtype == torch.bfloat16 and bf16.reduce_dtype == torch.float32
    assert parallel.fsdp_mixed_precision(torch.device("cpu"), bf16=True).param_dtype is None


def test_activation_checkpointing_reaches_the_model_inside_the_wrapper() -> None:
    model = tiny_model("qwen2-vl")
    wrapped = NeuronDeltaModel(model, _mask(model))
    assert parallel.enable_activation_checkpointing(wrapped)
    assert model.is_gradient_checkpointing
    assert not parallel.enable_activation_checkpointing(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_two_gloo_processes_end_with_the_one_process_weights(tmp_path: Path) -> None:
    """Every method under DDP and FSDP2 (grad accumulation, activation checkpointing, a rank with an
    empty slice), and a killed-then-resumed 2-process run equal to an uninterrupted one."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tests.mnaft_core.training.ddp_cases", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-6000:]
    for case in ddp_cases.CASES:
        two = load_file(str(tmp_path / f"{case}.safetensors"))
        one = ddp_cases.run(case, 1, tmp_path / "one" / case)
        assert one.keys() == two.keys(), case
        start = ddp_cases.run(case, 1, tmp_path / "start" / case, stop_after=0)  # the initial weights
        moved = max(float((one[k] - start[k]).abs().max()) for k in one)
        assert moved > 50 * ATOL, (case, moved)  # training moved the weights far beyond the tolerance
        diff = {k: float((one[k] - two[k]).abs().max()) for k in one}
        worst = max(diff, key=diff.__getitem__)
        assert diff[worst] <= ATOL, (case, worst, diff[worst])
        if case in ddp_cases.RESUMED:
            resumed = load_file(str(tmp_path / f"{case}-resumed.safetensors"))
            assert all(torch.equal(resumed[k], two[k]) for k in two), case
