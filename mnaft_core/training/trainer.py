"""One visible training loop for every method (nanoGPT-style): plan -> micro-batches -> step -> checkpoint.

Batches hold one direction each (so mnaft can train that direction's neurons); their order is a pure
function of (seed, epoch), which, with restored optimizer and RNG state, makes a resumed run end with
the same weights as an uninterrupted one (exactly, on CPU).

Under torchrun (an initialised process group) every rank takes its slice of each batch and the
gradients of the trainable parameters are averaged before the step: one all-reduce per step, on the
trainable parameters only (mnaft's are a few thousand values). Rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from mnaft_core._base import ProgressFn
from mnaft_core.training.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from mnaft_core.training.config import FinetuneConfig
from mnaft_core.training.methods import Trainable, load_trainable_state, trainable_state

Inputs = dict[str, torch.Tensor]
Collate = Callable[
    [str, Sequence[int]], tuple[tuple[str, ...], Inputs]
]  # direction, ids -> languages, inputs


METRICS_LOG = "metrics.jsonl"  # in the run folder: one JSON line per logged step, rank 0 writes


def last_logged_step(run_dir: Path) -> int:
    """The newest step in a run's metrics log (0 if none yet); safe while the trainer is appending."""
    path = run_dir / METRICS_LOG
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 65536))
            tail = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return 0
    lines = tail.split("\n")[:-1]  # the piece after the last newline may be half written
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # the first line of the tail may be cut
    return 0


class TrainingError(RuntimeError):
    """Training stopped; the message says why and what was kept."""


@dataclass(frozen=True)
class BatchRef:
    direction: str
    indices: tuple[int, ...]


def plan_epoch(directions: Sequence[str], batch_size: int, seed: int, epoch: int) -> list[BatchRef]:
    """Batches of one direction each, shuffled within and across directions; pure in (seed, epoch)."""
    if not directions:
        raise TrainingError("the training split is empty: nothing to train on")
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    by_dir: dict[str, list[int]] = {}
    for i, d in enumerate(directions):
        by_dir.setdefault(d, []).append(i)
    batches = []
    for d in sorted(by_dir):
        idx = by_dir[d]
        perm = torch.randperm(len(idx), generator=g).tolist()
        shuffled = [idx[j] for j in perm]
        batches += [
            BatchRef(d, tuple(shuffled[k : k + batch_size])) for k in range(0, len(shuffled), batch_size)
        ]
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[j] for j in order]


def lr_at(step: int, cfg: FinetuneConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.schedule == "linear":
        return cfg.lr * max(0.0, 1.0 - progress)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float
    tokens: int
    trainable_params: int
    optimizer_state_bytes: int
    resumed_from: int | None
    log: list[dict[str, Any]] = field(default_factory=list)


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size() for st in opt.state.values() for v in st.values() if torch.is_tensor(v)
    )


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless running in an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _average_gradients(params: Sequence[torch.Tensor], extra: torch.Tensor, size: int) -> torch.Tensor:
    """All-reduce the gradients (flattened into one buffer) and ``extra``; both divided by ``size``."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [extra.float().reshape(-1)])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
        offset += n
    return flat[offset:]


def _move(inputs: Inputs, device: torch.device) -> Inputs:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in inputs.items()}


def train(
    trainable: Trainable,
    directions: Sequence[str],
    collate: Collate,
    cfg: FinetuneConfig,
    run_dir: Path,
    device: torch.device | str = "cpu",
    stop_after: int | None = None,
    progress: bool = True,
    on_progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``cfg.steps`` optimizer steps, resuming from the newest checkpoint in ``run_dir``.

    ``directions[i]`` is the direction of training sample ``i``; ``collate(direction, indices)`` builds a
    micro-batch. ``stop_after`` ends the run early after that many steps (tests use it to simulate a kill).
    """
    device = torch.device(device)
    rank, size = world()
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    named = trainable.parameters()
    if not named:
        raise TrainingError("nothing to train: the method left no trainable parameter")
    params = [p for _, p in named]
    if size > 1:  # every rank starts from rank 0's trainable values (LoRA's random init included)
        for p in params:
            dist.broadcast(p.data, 0)
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95), foreach=False
    )
    state = TrainState(0, 0, 0, cfg.fingerprint())
    resumed_from = None
    if (ckpt := latest_checkpoint(run_dir)) is not None:
        state, saved = load_checkpoint(ckpt, opt)
        if state.config_fingerprint != cfg.fingerprint():
            raise TrainingError(f"{ckpt} was written with another config; use a new run folder")
        load_trainable_state(trainable, saved)
        resumed_from = state.step
    module = trainable.module.to(device)
    module.train()
    enable_checkpointing = getattr(module, "gradient_checkpointing_enable", None)
    if cfg.gradient_checkpointing and callable(enable_checkpointing):
        enable_checkpointing()
    autocast = device.type == "cuda" and cfg.bf16
    log_path = run_dir / METRICS_LOG
    kept = (
        [ln for ln in log_path.read_text().splitlines() if json.loads(ln)["step"] <= state.step]
        if log_path.exists()
        else []
    )
    if rank == 0:
        log_path.write_text("".join(ln + "\n" for ln in kept))
    plan = plan_epoch(directions, cfg.batch_size, cfg.seed, state.epoch)
    log: list[dict[str, Any]] = []
    tokens_total, loss_value, t0 = 0, float("nan"), time.perf_counter()
    end = cfg.steps if stop_after is None else min(cfg.steps, state.step + stop_after)
    bar = tqdm(
        total=cfg.steps,
        initial=state.step,
        disable=True if not progress or rank != 0 else None,  # None: only on a terminal
        desc=f"train {_method_name(trainable)}",
    )
    try:
        while state.step < end:
            lr = lr_at(state.step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            t_step = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            step_tokens = 0
            for _ in range(cfg.grad_accum):
                if state.batch_in_epoch >= len(plan):
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    plan = plan_epoch(directions, cfg.batch_size, cfg.seed, state.epoch)
                ref = plan[state.batch_in_epoch]
                state.batch_in_epoch += 1
                mine = ref.indices[rank::size]
                if not mine:  # a batch smaller than the world: this rank adds zero gradients
                    continue
                languages, inputs = collate(ref.direction, mine)
                inputs = _move(inputs, device)
                trainable.activate(languages)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = module(**inputs).loss
                (loss / cfg.grad_accum).backward()
                loss_sum += loss.detach()
                if "labels" in inputs:
                    step_tokens += int((inputs["labels"][:, 1:] != -100).sum())
            if size > 1:
                extra = torch.stack([loss_sum.float(), torch.tensor(float(step_tokens), device=device)])
                loss_sum, tokens_sum = _average_gradients(params, extra, size)
                step_tokens = round(float(tokens_sum) * size)
            loss_value = float(loss_sum) / cfg.grad_accum  # one host sync per step, for the log and NaN check
            if not math.isfinite(loss_value):
                last = latest_checkpoint(run_dir)
                raise TrainingError(
                    f"loss is {loss_value} at step {state.step}: stopped. Last good checkpoint: "
                    f"{last if last else 'none (the run diverged before the first checkpoint)'}. "
                    "Lower lr or raise warmup_steps, then resume."
                )
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            state.step += 1
            tokens_total += step_tokens
            dt = time.perf_counter() - t_step
            row = {"step": state.step, "loss": loss_value, "lr": lr, "tokens": step_tokens,
                   "tokens_per_s": step_tokens / dt if dt > 0 else 0.0, "seconds": dt}  # fmt: skip
            log.append(row)
            if rank == 0 and (state.step % cfg.log_every == 0 or state.step == end):
                with log_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            bar.update(1)
            if on_progress is not None:
                on_progress(state.step, cfg.steps)
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{row['tokens_per_s']:.0f}")
            if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps:
                if rank == 0:
                    save_checkpoint(run_dir, state, trainable_state(trainable), opt, cfg.keep_checkpoints)
                if size > 1:
                    dist.barrier()  # nobody runs ahead of a checkpoint it might resume from
    except torch.cuda.OutOfMemoryError as err:
        raise TrainingError(
            f"CUDA out of memory at step {state.step} (batch_size={cfg.batch_size}, "
            f"grad_accum={cfg.grad_accum}). Lower batch_size and raise grad_accum, turn on "
            "gradient_checkpointing, keep bf16 on, or use lora; resume continues from "
            f"{latest_checkpoint(run_dir) or 'the start'}"
        ) from err
    finally:
        bar.close()
        trainable.activate(None)
    return TrainResult(
        steps=state.step,
        final_loss=loss_value,
        seconds=time.perf_counter() - t0,
        tokens=tokens_total,
        trainable_params=sum(p.numel() for p in params),
        optimizer_state_bytes=optimizer_state_bytes(opt),
        resumed_from=resumed_from,
        log=log,
    )


def _method_name(t: Trainable) -> str:
    return type(t).__name__.removesuffix("Trainable").lower()
