"""torch.distributed's own wrappers for the trainer: DDP for a replicated base, FSDP2 to shard it.

- ``ddp``: ``DistributedDataParallel`` over the module. Only parameters with ``requires_grad`` are
  reduced (mnaft's deltas, LoRA's adapters), in buckets, overlapped with the backward.
- ``fsdp``: ``torch.distributed.fsdp.fully_shard`` on every transformer block (the model's
  ``_no_split_modules``) and on the root: parameters, gradients and AdamW state are sharded across ranks,
  so a full fine-tune needs ~1/world of the optimizer state per device. bf16 compute on CUDA through
  ``MixedPrecisionPolicy`` (gradients reduced in float32). The module may arrive on the CPU: each
  ``fully_shard`` call moves only its block's shard to the device.

NCCL takes CUDA tensors only, gloo CPU ones: every collective of the project goes through
``collective_device`` / ``check_collective`` so a tensor on the wrong device fails loudly here, not as a
hang or an opaque NCCL error after hours of training.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

Sharding = Literal["ddp", "fsdp"]


def collective_device(group: dist.ProcessGroup | None = None) -> torch.device:
    """The device a collective on ``group`` needs: the current CUDA device for NCCL, else the CPU."""
    backend = str(dist.get_backend(group)).lower()
    if "nccl" in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_collective(tensor: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """``tensor``, after checking it lives where ``group``'s backend can reduce it."""
    need = collective_device(group)
    if tensor.device.type != need.type:
        raise ValueError(
            f"a {tensor.device.type} tensor cannot take part in a collective of backend "
            f"{dist.get_backend(group)!r}: it needs {need.type} tensors (use collective_device())"
        )
    return tensor


def resolve_sharding(method: str, sharding: str) -> Sharding:
    """``auto`` shards full fine-tuning (its optimizer state is the memory) and replicates the rest."""
    if sharding == "auto":
        return "fsdp" if method == "full" else "ddp"
    if sharding not in ("ddp", "fsdp"):
        raise ValueError(f"finetune.sharding must be auto, ddp or fsdp, got {sharding!r}")
    return sharding  # type: ignore[return-value]


def enable_activation_checkpointing(module: nn.Module) -> bool:
    """Turn on the Hugging Face model's gradient checkpointing wherever it sits in ``module``.

    Non-reentrant: the reentrant variant gives no gradient to trainable tensors inside a block whose
    inputs do not require grad (a frozen base with deltas or adapters) and does not compose with DDP.
    Returns whether a model offered it.
    """
    for sub in module.modules():
        enable = getattr(sub, "gradient_checkpointing_enable", None)
        if callable(enable) and getattr(sub, "supports_gradient_checkpointing", False):
            enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            return True
    return False


def _block_classes(module: nn.Module) -> set[str]:
    names: set[str] = set()
    for sub in module.modules():
        names |= set(getattr(sub, "_no_split_modules", None) or ())
    return names


def fsdp_mixed_precision(device: torch.device, bf16: bool) -> Any:
    """bf16 parameters in forward/backward with float32 gradient reduction (CUDA), else none."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if device.type == "cuda" and bf16:
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def wrap(
    module: nn.Module, sharding: Sharding, device: torch.device, *, find_unused: bool, bf16: bool
) -> nn.Module:
    """The module to call in the training loop (the process group must be initialised)."""
    if sharding == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # buffers (neuron indices, rotary tables) are the same on every rank: no per-forward broadcast
        return DDP(module, device_ids=ids, find_unused_parameters=find_unused, broadcast_buffers=False)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # No broadcast: the module may still be on the CPU (NCCL takes CUDA tensors), and every rank built
    # the same values (one checkpoint; LoRA's init seeded by finetune.seed)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = fsdp_mixed_precision(device, bf16)
    blocks = _block_classes(module)
    units = [m for m in module.modules() if type(m).__name__ in blocks]
    if not units:
        raise ValueError(f"{type(module).__name__}: no transformer block (_no_split_modules) to shard")
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(module, mesh=mesh, mp_policy=policy)
    return module


def gradient_sync(wrapped: nn.Module, sync: bool) -> Any:
    """A context in which backward reduces gradients (``sync``) or only accumulates them locally."""
    no_sync = getattr(wrapped, "no_sync", None)  # DDP
    if callable(no_sync):
        return nullcontext() if sync else no_sync()
    set_sync = getattr(wrapped, "set_requires_gradient_sync", None)  # FSDP2
    if callable(set_sync):
        set_sync(sync)
    return nullcontext()


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, names: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The full (unsharded) values of ``names`` and the optimizer state, on rank 0's CPU (collective;
    other ranks get empty results).

    The optimizer state comes keyed like ``optimizer.state_dict()`` (parameter index in ``names``
    order), so a checkpoint reads the same whether or not the run was sharded.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd: dict[str, Any] = dict(get_model_state_dict(module, options=opts))
    wanted = set(names)
    params = {k: v for k, v in model_sd.items() if k in wanted}
    osd: dict[str, Any] = dict(get_optimizer_state_dict(module, optimizer, options=opts))
    if not osd:
        return params, None
    index = {n: i for i, n in enumerate(names)}
    state = {index[k]: v for k, v in osd["state"].items()}
    groups = [{**g, "params": [index[k] for k in g["params"]]} for g in osd["param_groups"]]
    return params, {"state": state, "param_groups": groups}


def load_full_state(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    names: list[str],
    params: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
) -> None:
    """Load full values (as ``full_state`` returns them, read by every rank) into a sharded run."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    state = {names[int(i)]: v for i, v in optim_state["state"].items()}
    groups = [{**g, "params": [names[int(i)] for i in g["params"]]} for g in optim_state["param_groups"]]
    model_sd: dict[str, Any] = dict(params)
    set_state_dict(module, optimizer, model_state_dict=model_sd,
                   optim_state_dict={"state": state, "param_groups": groups},
                   options=StateDictOptions(full_state_dict=True, strict=False))  # fmt: skip


@torch.no_grad()
def gather_in_place(module: nn.Module) -> None:
    """After sharded training: rank 0's parameters become the full values on its CPU (a collective;
    the other ranks keep their shards). Gathered one parameter at a time, so no device ever holds the
    whole model. The FSDP hooks stay: the module is for merging and saving, not for more sharded steps.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not full:  # ranks other than 0
        return
    done: dict[int, nn.Parameter] = {}
    for prefix, sub in module.named_modules():
        for name, p in list(sub._parameters.items()):
            if p is None:
                continue
            if id(p) not in done:  # tied weights stay tied
                value = full[f"{prefix}.{name}" if prefix else name]
                assert isinstance(value, torch.Tensor)
                done[id(p)] = nn.Parameter(value, requires_grad=p.requires_grad)
            sub._parameters[name] = done[id(p)]
