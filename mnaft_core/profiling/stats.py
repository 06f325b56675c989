"""Per-neuron activation statistics, accumulated on the device by forward hooks.

For every MLP site the hook sees the activation tensor ``a`` (tokens x neurons) and a group id per token
(image / instruction / response; padding goes to a discard slot). It adds, per group and neuron:
tokens seen, tokens with ``a > 0``, sum of ``a``, sum of ``a**2`` and, when a backward pass follows,
the first-order Taylor importance ``sum |a * dL/da|``. The three forward statistics are written side by
side into one reused float32 workspace (3 x chunk x neurons) and reduced per group by one batched
product with the (groups x tokens) one-hot matrix (a plain column sum where every token has one group,
as in a vision tower). No boolean indexing, no ``.item()``, no activation-sized allocation per layer: a
batch never waits for the host, and on a small model the hook costs a few elementwise passes rather
than a dozen ops.
Tokens are processed in chunks of ``chunk_tokens``, so the scratch is bounded whatever the sequence
length: at most ``4 x chunk_tokens x N`` float32 values per module (3 forward statistics + the Taylor
product), plus ``(G+1) x T`` float32 and ``T`` int64 for the per-token group map of a forward of ``T``
tokens. A model split across devices (``device_map``) hands each layer's activation over on its own
device; the chunk is copied to the recorder's device (a no-op otherwise). The sums are the same as
unchunked up to float32 summation order (bit-equal on exact values).
``flush`` moves the totals to the host in float64 and zeroes the device buffers (do it once per shard,
so float32 sums never grow large enough to lose precision).

Optionally (``sample_slots > 0``) the recorder also sums each sample's activations over its counted
tokens, for per-sample mean activations (samples x layer x neuron). Before each forward the runner sets
where the batch starts in the shard and how the tokens split into samples: equal runs (a padded text
batch, a CLIP tower) or ``sample_sizes`` (Qwen2-VL's towers pack every image's patches into one
sequence). ``flush_samples`` returns the means in float16.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from mnaft_core.models.adapters import MlpSite
from mnaft_core.models.adapters.base import ActivationPoint

GROUPS = ("image", "instruction", "response")
STATS = ("active", "sum", "sumsq", "taylor")


@dataclass
class HostStats:
    """Totals of one module (vision or language) over everything flushed so far, float64 on the host."""

    tokens: NDArray[np.float64]  # (G,)
    active: NDArray[np.float64]  # (G, L, N)
    sum: NDArray[np.float64]
    sumsq: NDArray[np.float64]
    taylor: NDArray[np.float64]
    # (L, N) sum over batches of |dL/dW| over each neuron's weight slices; None unless profiled
    gradient: NDArray[np.float64] | None = None

    @classmethod
    def zeros(cls, layers: int, neurons: int) -> HostStats:
        g = len(GROUPS)
        return cls(np.zeros(g), *(np.zeros((g, layers, neurons)) for _ in STATS))

    def stacked(self) -> NDArray[np.float64]:
        """(stat, G, L, N) in the order of ``STATS``: the profile store's ``stats`` chunk of a shard."""
        return np.stack([getattr(self, s) for s in STATS])

    def __iadd__(self, other: HostStats) -> HostStats:
        for name in ("tokens", *STATS):
            getattr(self, name).__iadd__(getattr(other, name))
        if (self.gradient is None) != (other.gradient is None):
            raise ValueError("cannot add statistics with and without the gradient statistic")
        if self.gradient is not None and other.gradient is not None:
            self.gradient += other.gradient
        return self


def neuron_abs_grad(slices: Sequence[tuple[torch.Tensor, int]], neurons: int) -> torch.Tensor:
    """Per neuron, ``sum |g|`` over its slices: each ``(g, axis)`` is a weight's gradient and the axis along
    which neuron j owns index j (0: a row of up/gate/fc1, 1: a column of down/fc2). float32, (neurons,)."""
    out: torch.Tensor | None = None
    for g, axis in slices:
        if g.shape[axis] != neurons:
            raise ValueError(f"gradient of shape {tuple(g.shape)} has no {neurons} neurons on axis {axis}")
        dims = [d for d in range(g.dim()) if d != axis]
        part = g.detach().abs().float().sum(dim=dims) if dims else g.detach().abs().float()
        out = part if out is None else out + part.to(out.device)
    if out is None:
        raise ValueError("no weight slices given")
    return out


@dataclass
class GradientRecorder:
    """The gradient statistic of one module: after each backward, every layer's ``sum |dL/dW|`` per neuron
    over its weight slices (``neuron_abs_grad``), added on the device; the gradients are then dropped.

    The parameters must require gradients during the profile's backward (the runner switches them on).
    The absolute value is taken per batch (of the summed token loss), then summed over batches and
    shards, so shards add up like the other statistics.
    """

    params: Sequence[Sequence[tuple[nn.Parameter, int]]]  # per layer: (weight, neuron axis)
    neurons: int
    device: torch.device
    _acc: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self._acc = torch.zeros(len(self.params), self.neurons, device=self.device)

    def collect(self) -> None:
        for layer, group in enumerate(self.params):
            grads = [(p.grad, axis) for p, axis in group if p.grad is not None]
            if grads:
                self._acc[layer] += neuron_abs_grad(grads, self.neurons).to(self.device)
            for p, _ in group:
                p.grad = None

    def flush(self) -> NDArray[np.float64]:
        out = self._acc.double().cpu().numpy()
        self._acc.zero_()
        return out


@dataclass
class ModuleRecorder:
    """Hooks on every site of one module; ``group_ids`` must be set before each forward."""

    sites: Sequence[MlpSite]
    neurons: int
    device: torch.device
    point: ActivationPoint = "act"
    taylor: bool = False
    group_ids: torch.Tensor | None = None  # (tokens,) long, -1 = padding / not counted
    # Set instead of group_ids when every token belongs to one group (a vision tower sees only images).
    constant_group: int | None = None
    sample_slots: int = 0  # > 0: also keep per-sample activation sums for this many samples per shard
    sample_offset: int = 0  # slot of the batch's first sample in the shard
    batch_samples: int = 0  # samples in the batch (tokens split into equal runs unless sample_sizes)
    sample_sizes: torch.Tensor | None = None  # (batch_samples,) tokens per sample, when unequal
    chunk_tokens: int = 2048  # tokens per chunk of the scratch workspaces (the memory bound)
    _tokens: torch.Tensor = field(init=False)  # (G+1,)
    _acc: torch.Tensor = field(init=False)  # (L, 3, G+1, N): active, sum, sumsq
    _taylor: torch.Tensor = field(init=False)  # (L, G+1, N)
    _ws: torch.Tensor | None = field(init=False, default=None)  # (3, tokens, N) float32, reused
    _tws: torch.Tensor | None = field(init=False, default=None)  # (tokens, N) float32, for the backward
    _samples: tuple[torch.Tensor, torch.Tensor] | None = field(init=False, default=None)
    _slots: torch.Tensor | None = field(init=False, default=None)  # (tokens,) group slot of each token
    _onehot: torch.Tensor | None = field(init=False, default=None)  # (G+1, tokens) float32
    _sample_slot_ids: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {self.chunk_tokens}")
        g, n_layers = len(GROUPS) + 1, len(self.sites)
        # counts in float32 are exact to 2**24 per flush; flush per shard keeps them far below
        self._tokens = torch.zeros(g, device=self.device)
        self._acc = torch.zeros(n_layers, 3, g, self.neurons, device=self.device)
        self._taylor = torch.zeros(n_layers, g, self.neurons, device=self.device)
        if self.sample_slots:
            # one extra slot catches padding tokens, as the discard group does above
            self._samples = (
                torch.zeros(self.sample_slots + 1, device=self.device),
                torch.zeros(self.sample_slots + 1, n_layers, self.neurons, device=self.device),
            )

    def _slot_ids(self, n_tokens: int) -> torch.Tensor:
        if self.constant_group is not None:
            return torch.full((n_tokens,), self.constant_group, dtype=torch.long, device=self.device)
        if self.group_ids is None or self.group_ids.numel() != n_tokens:
            got = None if self.group_ids is None else self.group_ids.numel()
            raise RuntimeError(
                f"{self.sites[0].module} recorder: group ids for {got} tokens, activation has {n_tokens}"
            )
        ids = self.group_ids.to(self.device)
        return torch.where(ids < 0, len(GROUPS), ids)  # padding -> the discard slot

    def _start_forward(self, n_tokens: int) -> None:
        """The token -> group map of a forward, shared by all its layers (a forward starts at layer 0)."""
        slots = self._slot_ids(n_tokens)
        groups = torch.arange(len(GROUPS) + 1, device=self.device)
        self._slots = slots
        self._onehot = (slots.unsqueeze(0) == groups.unsqueeze(1)).float()
        self._sample_slot_ids = None

    @staticmethod
    def _reuse(buf: torch.Tensor | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """A float32 scratch tensor of ``shape`` (tokens on axis -2), grown only when a batch is longer."""
        if buf is None or buf.shape[-2] < shape[-2]:
            buf = torch.empty(shape, dtype=torch.float32, device=device)
        return buf

    def record(self, layer: int, a: torch.Tensor) -> None:
        flat = a.detach().reshape(-1, a.shape[-1])  # (T, N), the model's dtype
        n = flat.shape[0]
        if layer == 0 or self._onehot is None or self._onehot.shape[1] != n:
            self._start_forward(n)
        assert self._onehot is not None and self._slots is not None
        if layer == 0:
            self._tokens += self._onehot.sum(1)
        sample_ids = self._forward_sample_ids(layer, self._slots) if self._samples is not None else None
        step = self.chunk_tokens
        self._ws = self._reuse(self._ws, (3, min(n, step), self.neurons), self.device)
        for c0 in range(0, n, step):
            c1 = min(n, c0 + step)
            ws = self._ws[:, : c1 - c0]  # (3, t, N): a > 0, a, a**2 in float32
            part = flat[c0:c1].to(self.device, non_blocking=True)  # a no-op unless the model is split
            torch.gt(part, 0, out=ws[0])
            ws[1].copy_(part)
            torch.mul(ws[1], ws[1], out=ws[2])
            if self.constant_group is not None:
                self._acc[layer, :, self.constant_group] += ws.sum(1)
            else:  # (3, G+1, t) @ (3, t, N): the per-group sums of all three at once
                self._acc[layer].baddbmm_(self._onehot[:, c0:c1].expand(3, -1, -1), ws)
            if self._samples is not None and sample_ids is not None:
                self._samples[1][:, layer].index_add_(0, sample_ids[c0:c1], ws[1])
        if self.taylor and a.requires_grad:
            a.register_hook(self._taylor_hook(layer, flat, self._onehot))

    def _taylor_hook(self, layer: int, flat: torch.Tensor, onehot: torch.Tensor):  # type: ignore[no-untyped-def]
        target, group, step = self._taylor[layer], self.constant_group, self.chunk_tokens

        def add_taylor(grad: torch.Tensor) -> None:
            n = flat.shape[0]
            g = grad.reshape(flat.shape)
            self._tws = self._reuse(self._tws, (min(n, step), flat.shape[1]), self.device)
            for c0 in range(0, n, step):
                c1 = min(n, c0 + step)
                w = self._tws[: c1 - c0]
                w.copy_(g[c0:c1])
                w.mul_(flat[c0:c1].to(w.device, non_blocking=True)).abs_()  # |a * dL/da| in float32
                if group is not None:
                    target[group] += w.sum(0)
                else:
                    target.addmm_(onehot[:, c0:c1], w)

        return add_taylor

    def _forward_sample_ids(self, layer: int, slots: torch.Tensor) -> torch.Tensor:
        """Each token's sample slot (padding -> the spare slot), counted once per forward."""
        assert self._samples is not None
        n = slots.shape[0]
        if layer == 0 or self._sample_slot_ids is None or len(self._sample_slot_ids) != n:
            ids = self._sample_ids(n) + self.sample_offset  # the same for all layers of a forward
            self._sample_slot_ids = torch.where((slots == len(GROUPS)) | (ids < 0), self.sample_slots, ids)
            counts = self._samples[0]
            counts.index_add_(0, self._sample_slot_ids, torch.ones_like(ids, dtype=counts.dtype))
        return self._sample_slot_ids

    def _sample_ids(self, n_tokens: int) -> torch.Tensor:
        where = f"{self.sites[0].module} recorder"
        if self.sample_sizes is not None:
            sizes = self.sample_sizes  # kept on the host (the processor's grid): checking it costs no sync
            if (total := int(sizes.sum())) != n_tokens:
                raise RuntimeError(f"{where}: sample sizes sum to {total}, activation has {n_tokens}")
            ids = torch.arange(len(sizes), device=self.device)
            return torch.repeat_interleave(ids, sizes.to(self.device), output_size=n_tokens)
        if self.batch_samples <= 0 or n_tokens % self.batch_samples:
            raise RuntimeError(f"{where}: {n_tokens} tokens do not split into {self.batch_samples} samples")
        return torch.arange(n_tokens, device=self.device) // (n_tokens // self.batch_samples)

    def flush_samples(self) -> NDArray[np.float16]:
        """Per-sample mean activations (slots, layers, neurons) since the last call; NaN for empty slots."""
        if self._samples is None:
            raise RuntimeError("this recorder keeps no per-sample sums (sample_slots is 0)")
        counts, sums = self._samples
        means = sums[: self.sample_slots] / counts[: self.sample_slots, None, None]
        out = means.cpu().numpy().astype(np.float16)  # 0/0 -> NaN marks a slot no sample filled
        counts.zero_()
        sums.zero_()
        return out

    def flush(self) -> HostStats:
        g = len(GROUPS)
        # (L, 3, G, N) -> (3, G, L, N) and (L, G, N) -> (G, L, N), moved to the host in one copy each
        acc = self._acc[:, :, :g].permute(1, 2, 0, 3).contiguous().double().cpu().numpy()
        taylor = self._taylor[:, :g].permute(1, 0, 2).contiguous().double().cpu().numpy()
        out = HostStats(self._tokens[:g].double().cpu().numpy(), acc[0], acc[1], acc[2], taylor)
        for t in (self._tokens, self._acc, self._taylor):
            t.zero_()
        return out


@contextmanager
def recording(model: nn.Module, recorders: Sequence[ModuleRecorder]) -> Iterator[None]:
    """Attach the recorders' hooks to their sites for the duration of the block."""
    handles = []
    for rec in recorders:
        for layer, site in enumerate(rec.sites):
            mlp = site.mlp(model)
            if rec.point == "act":
                mod = mlp.get_submodule(site.act)
                handles.append(mod.register_forward_hook(_out_hook(rec, layer)))
            else:
                mod = mlp.get_submodule(site.out_proj)
                handles.append(mod.register_forward_pre_hook(_in_hook(rec, layer)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _out_hook(rec: ModuleRecorder, layer: int):  # type: ignore[no-untyped-def]
    def hook(_m: nn.Module, _i: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        rec.record(layer, out)

    return hook


def _in_hook(rec: ModuleRecorder, layer: int):  # type: ignore[no-untyped-def]
    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        rec.record(layer, inputs[0])

    return hook
