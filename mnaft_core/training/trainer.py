"""One visible training loop for every method (nanoGPT-style): plan -> micro-batches -> step -> checkpoint.

Batches hold one direction each (so mnaft can train that direction's neurons); their order is a pure
function of (seed, epoch), which, with restored optimizer and RNG state, makes a resumed run end with
the same weights as an uninterrupted one (exactly, on CPU).

Under torchrun (an initialised process group) every rank takes its slice of each batch, and the model
runs under torch.distributed's wrappers (``parallel.py``): DDP reduces the trainable gradients in
buckets during the backward, FSDP2 shards parameters, gradients and optimizer state. Each rank's loss is
weighted by its share of the batch's target tokens, so N processes compute the gradient of the same
token mean as one process on the whole batch. Rank 0 writes checkpoints (full, unsharded tensors) and
logs.
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
from mnaft_core.training import parallel
from mnaft_core.training.checkpoint import TrainState, latest_checkpoint, read_checkpoint, save_checkpoint
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
    """This process's optimizer state (its shard, under FSDP)."""
    from torch.distributed.tensor import DTensor

    local = [v.to_local() if isinstance(v, DTensor) else v for st in opt.state.values() for v in st.values()]
    return sum(v.numel() * v.element_size() for v in local if torch.is_tensor(v))


def world() -> tuple[int, int]:
    """(rank, world size): (0, 1) unless running in an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _token_weight(n_mine: int, size: int, comm: torch.device, device: torch.device) -> torch.Tensor:
    """This rank's loss weight: its share of the micro-batch's target tokens, times the world size
    (the wrappers average gradients over ranks), so the reduced gradient is that of the whole batch's
    token mean. 1 in a single process."""
    if size == 1:
        return torch.ones((), device=device)
    total = parallel.check_collective(torch.tensor(float(n_mine), device=comm))
    dist.all_reduce(total)
    return (n_mine * size / total.clamp_min(1.0)).to(device)


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
    if not trainable.parameters():
        raise TrainingError("nothing to train: the method left no trainable parameter")
    sharding = parallel.resolve_sharding(cfg.method, cfg.sharding) if size > 1 else None
    # FSDP2 moves each block's shard to the device as it shards it; everything else moves whole
    module = trainable.module if sharding == "fsdp" else trainable.module.to(device)
    module.train()
    if cfg.gradient_checkpointing and not parallel.enable_activation_checkpointing(module):
        raise TrainingError(f"gradient_checkpointing: {type(module).__name__} does not support it")
    step_module = module
    if sharding is not None:
        # DDP must find unused parameters where a batch trains only some of them: mnaft's other
        # languages' neurons, a full fine-tune's vision tower on a text-only batch
        unused = cfg.method == "full" or (cfg.method == "mnaft" and cfg.languages == "batch")
        step_module = parallel.wrap(module, sharding, device, find_unused=unused, bf16=cfg.bf16)
    named = trainable.parameters()  # after wrapping: FSDP2 replaces them by sharded ones
    names, params = [n for n, _ in named], [p for _, p in named]
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95), foreach=False
    )
    state = TrainState(0, 0, 0, cfg.fingerprint())
    resumed_from = None
    if (ckpt := latest_checkpoint(run_dir)) is not None:
        state, saved, opt_state = read_checkpoint(ckpt)
        if state.config_fingerprint != cfg.fingerprint():
            raise TrainingError(f"{ckpt} was written with another config; use a new run folder")
        try:
            if sharding == "fsdp":
                parallel.load_full_state(module, opt, names, saved, opt_state)
            else:
                opt.load_state_dict(opt_state)
                load_trainable_state(trainable, saved)
        except (ValueError, KeyError, RuntimeError) as e:  # another mask or model under the same folder
            raise TrainingError(
                f"{ckpt} holds other trainable parameters than this run's ({e}); "
                f"remove {run_dir} or use a new run folder"
            ) from e
        resumed_from = state.step
    autocast = device.type == "cuda" and cfg.bf16 and sharding != "fsdp"  # FSDP2 casts by its policy
    comm = parallel.collective_device() if sharding is not None else device
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
            for micro in range(cfg.grad_accum):
                if state.batch_in_epoch >= len(plan):
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                    plan = plan_epoch(directions, cfg.batch_size, cfg.seed, state.epoch)
                ref = plan[state.batch_in_epoch]
                state.batch_in_epoch += 1
                mine = ref.indices[rank::size]
                # a batch smaller than the world: this rank still runs (every rank must join the
                # gradient reduction), on one sample with weight zero
                languages, inputs = collate(ref.direction, mine or ref.indices[:1])
                n_mine = int((inputs["labels"][:, 1:] != -100).sum()) if mine and "labels" in inputs else 0
                weight = _token_weight(n_mine, size, comm, device)  # a collective: every rank calls it
                inputs = _move(inputs, device)
                trainable.activate(languages)
                with parallel.gradient_sync(step_module, micro == cfg.grad_accum - 1):
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        loss = step_module(**inputs).loss
                    (loss * weight / cfg.grad_accum).backward()
                loss_sum += loss.detach().float() * weight / size
                step_tokens += n_mine
            if size > 1:
                extra = torch.stack([loss_sum, torch.tensor(float(step_tokens), device=device)])
                extra = parallel.check_collective(extra.to(comm))
                dist.all_reduce(extra)
                loss_sum, step_tokens = extra[0], round(float(extra[1]))
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
                if sharding == "fsdp":  # every rank takes part in gathering the full tensors
                    full, opt_full = parallel.full_state(module, opt, names)
                    if rank == 0:
                        assert opt_full is not None
                        save_checkpoint(run_dir, state, full, opt_full, cfg.keep_checkpoints)
                elif rank == 0:
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
    opt_bytes, n_params = optimizer_state_bytes(opt), sum(p.numel() for p in params)
    if sharding == "fsdp":
        del opt, params, named
        parallel.gather_in_place(module)  # full weights on rank 0's CPU, for the merge and export
    return TrainResult(
        steps=state.step,
        final_loss=loss_value,
        seconds=time.perf_counter() - t0,
        tokens=tokens_total,
        trainable_params=n_params,
        optimizer_state_bytes=opt_bytes,
        resumed_from=resumed_from,
        log=log,
    )


def _method_name(t: Trainable) -> str:
    return type(t).__name__.removesuffix("Trainable").lower()
