"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for everything else.

``ckpt-<step>/`` holds ``trainable.safetensors`` (the trainable parameters only), ``optimizer.safetensors``
+ ``optimizer.json`` (per-parameter state tensors, and the param groups), ``rng.safetensors`` (torch CPU
and CUDA generator states) and ``state.json`` (step, data position, Python RNG, config fingerprint).
A checkpoint folder is written as ``.partial`` and renamed when complete, so a run killed while saving
resumes from the previous one.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CKPT_PREFIX = "ckpt-"


@dataclass
class TrainState:
    step: int  # optimizer steps done
    epoch: int  # data position: epoch and batch index within it
    batch_in_epoch: int
    config_fingerprint: str


def save_checkpoint(
    run_dir: Path,
    state: TrainState,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer | dict[str, Any],
    keep: int = 2,
) -> Path:
    """``optimizer``: the optimizer, or its state dict (a sharded run gathers one on rank 0)."""
    final = run_dir / f"{CKPT_PREFIX}{state.step:08d}"
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
    opt = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in opt["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps({"param_groups": opt["param_groups"], "scalars": scalars}))
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            rng[f"torch_cuda_{i}"] = s
    save_file(rng, str(tmp / "rng.safetensors"))
    py_state = random.getstate()
    (tmp / "state.json").write_text(
        json.dumps({**state.__dict__, "python_random": [py_state[0], list(py_state[1]), py_state[2]]})
    )
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in sorted(run_dir.glob(f"{CKPT_PREFIX}*[0-9]"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = sorted(p for p in run_dir.glob(f"{CKPT_PREFIX}*[0-9]") if (p / "state.json").exists())
    return done[-1] if done else None


def load_checkpoint(
    path: Path, optimizer: torch.optim.Optimizer
) -> tuple[TrainState, dict[str, torch.Tensor]]:
    """Restore optimizer and RNG state in place; return the train state and trainable tensors."""
    state, trainable, opt_state = read_checkpoint(path)
    optimizer.load_state_dict(opt_state)
    return state, trainable


def read_checkpoint(path: Path) -> tuple[TrainState, dict[str, torch.Tensor], dict[str, Any]]:
    """Restore RNG state; return the train state, trainable tensors and the optimizer's state dict."""
    raw = json.loads((path / "state.json").read_text())
    py = raw.pop("python_random")
    random.setstate((py[0], tuple(py[1]), py[2]))
    state = TrainState(**raw)
    trainable = load_file(str(path / "trainable.safetensors"))
    meta = json.loads((path / "optimizer.json").read_text())
    tensors = load_file(str(path / "optimizer.safetensors"))
    opt_state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, _, name = key.partition(".")
        opt_state.setdefault(int(idx), {})[name] = v
    for idx, sc in meta["scalars"].items():
        opt_state.setdefault(int(idx), {}).update(sc)
    rng = load_file(str(path / "rng.safetensors"))
    torch.set_rng_state(rng["torch_cpu"])
    cuda = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return state, trainable, {"state": opt_state, "param_groups": meta["param_groups"]}
