"""Masked fine-tuning as neuron deltas: trainable tensors for the selected rows/columns only.

For an input projection (gate/up/fc1, weight ``(out, in)``) the selected neurons are rows ``R``; the layer
learns ``D_in (|R|, in)`` (and ``d_b (|R|,)`` when there is a bias) and computes::

    y = x W^T + b;   y[..., R] += x D_in^T + d_b                      # (B, T, out)

For the output projection (down/fc2) the neurons are columns ``C``; it learns ``D_out (out, |C|)``::

    y = x W^T + b;   y += x[..., C] D_out^T                             # (B, T, out)

The base weights stay frozen and are never touched by the optimizer, so every entry outside the mask is
bit-identical to the base after any training, weight decay included; optimizer state exists only for
the deltas. Neurons are grouped by the languages they serve ("agnostic", or a set of languages for
specific neurons); each group has its own delta tensors so that a batch of one direction activates only
its groups, and the others receive no gradient at all (``grad is None``: AdamW skips them, momentum and
decay included). ``merge`` folds the deltas into the weights for a plain Hugging Face checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnaft_core.models.adapters import neuron_sites
from mnaft_core.selection.mask import NeuronMask

AGNOSTIC = "agnostic"


@dataclass(frozen=True)
class NeuronGroup:
    """Neurons of one site that share a language set; ``languages`` empty means agnostic."""

    name: str
    languages: frozenset[str]
    index: torch.Tensor  # (n,) long

    def active_for(self, languages: frozenset[str] | None) -> bool:
        return languages is None or not self.languages or bool(self.languages & languages)


def group_neurons(mask_site_agnostic: np.ndarray, specific: dict[str, np.ndarray]) -> list[NeuronGroup]:
    """Partition a site's masked neurons by language set (agnostic first, then sorted by name)."""
    langs_of: dict[int, set[str]] = {}
    for lang, idx in specific.items():
        for j in idx.tolist():
            langs_of.setdefault(int(j), set()).add(lang)
    agnostic = {int(j) for j in mask_site_agnostic.tolist()}
    by_key: dict[frozenset[str], list[int]] = {}
    if agnostic:
        by_key[frozenset()] = sorted(agnostic)
    for j, langs in langs_of.items():
        if j not in agnostic:
            by_key.setdefault(frozenset(langs), []).append(j)
    groups = []
    for key in sorted(by_key, key=lambda k: (len(k) > 0, sorted(k))):
        name = "+".join(sorted(key)) or AGNOSTIC
        groups.append(NeuronGroup(name, key, torch.tensor(sorted(by_key[key]), dtype=torch.long)))
    return groups


def _join(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=dim)


class NeuronDeltaLinear(nn.Module):
    """A frozen ``nn.Linear`` plus trainable deltas for selected rows (``axis=0``) or columns (``axis=1``)."""

    def __init__(self, base: nn.Linear, groups: list[NeuronGroup], axis: int):
        super().__init__()
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (rows) or 1 (columns), got {axis}")
        self.base = base
        self.axis = axis
        self.groups = groups
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.delta = nn.ParameterList()
        self.delta_bias = nn.ParameterList()
        for g in groups:
            shape = (len(g.index), w.shape[1]) if axis == 0 else (w.shape[0], len(g.index))
            self.delta.append(nn.Parameter(torch.zeros(shape, dtype=w.dtype, device=w.device)))
            if axis == 0 and base.bias is not None:
                self.delta_bias.append(
                    nn.Parameter(torch.zeros(len(g.index), dtype=w.dtype, device=w.device))
                )
            self.register_buffer(f"index_{len(self.delta) - 1}", g.index.to(w.device), persistent=False)
        self.active: list[int] = []
        self.register_buffer("active_index", None, persistent=False)  # a buffer: moves with .to(device)
        self.set_active(range(len(groups)))

    def set_active(self, groups: Iterable[int]) -> None:
        """Which groups train in the next forwards; their joint index is built here, once, not per call."""
        self.active = list(groups)
        idx = [self._index(i) for i in self.active]
        self.active_index = idx[0] if len(idx) == 1 else torch.cat(idx) if idx else None

    def _index(self, i: int) -> torch.Tensor:
        idx: torch.Tensor = getattr(self, f"index_{i}")
        return idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        idx: torch.Tensor | None = self.active_index
        if idx is None:
            return y
        if self.axis == 0:
            d = _join([self.delta[i] for i in self.active], 0)
            extra = F.linear(x, d.to(x.dtype))
            if len(self.delta_bias):
                extra = extra + _join([self.delta_bias[i] for i in self.active], 0).to(x.dtype)
            # in place: the frozen linear's backward needs its input and weight, never its output
            return y.index_add_(-1, idx, extra.to(y.dtype))
        d = _join([self.delta[i] for i in self.active], 1)
        return y + F.linear(x.index_select(-1, idx), d.to(x.dtype)).to(y.dtype)

    @torch.no_grad()
    def merged_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The base weight (and bias) with every group's delta added to its slices."""
        w = self.base.weight.clone()
        b = None if self.base.bias is None else self.base.bias.clone()
        for i, _ in enumerate(self.groups):
            idx = self._index(i)
            w.index_add_(self.axis, idx, self.delta[i].to(w.dtype))
            if self.axis == 0 and b is not None:
                b.index_add_(0, idx, self.delta_bias[i].to(b.dtype))
        return w, b


class NeuronDeltaModel(nn.Module):
    """Wraps a model so that only the masked neurons' slices train (peft's wrapper, for neurons)."""

    def __init__(self, model: nn.Module, mask: NeuronMask, fingerprint: str | None = None):
        super().__init__()
        mask.check(model, fingerprint)
        self.model = model
        self.mask = mask
        for p in model.parameters():
            p.requires_grad_(False)
        self.layers: dict[str, NeuronDeltaLinear] = {}
        for site in neuron_sites(model):
            m = mask.sites.get(site.path)
            if m is None:
                continue
            groups = group_neurons(m.agnostic, m.specific)
            if not groups:
                continue
            mlp = site.mlp(model)
            for name, axis in [*((n, 0) for n in site.in_projs), (site.out_proj, 1)]:
                layer = NeuronDeltaLinear(site.linear(model, name), groups, axis)
                setattr(mlp, name, layer)
                self.layers[f"{site.path}.{name}"] = layer

    def forward(self, *args: object, **kwargs: object) -> object:
        return self.model(*args, **kwargs)

    def activate(self, languages: Iterable[str] | None) -> None:
        """Train the agnostic groups plus the groups of ``languages`` (all groups when None)."""
        langs = None if languages is None else frozenset(languages)
        for layer in self.layers.values():
            layer.set_active(i for i, g in enumerate(layer.groups) if g.active_for(langs))

    @contextmanager
    def languages(self, languages: Iterable[str] | None) -> Iterator[None]:
        self.activate(languages)
        try:
            yield
        finally:
            self.activate(None)

    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if p.requires_grad:
                yield name, p

    def num_trainable(self) -> int:
        return sum(p.numel() for _, p in self.trainable_parameters())

    @torch.no_grad()
    def merge(self) -> nn.Module:
        """Fold the deltas into the weights and restore plain ``nn.Linear`` modules; returns the model."""
        for path, layer in self.layers.items():
            w, b = layer.merged_weight()
            layer.base.weight.copy_(w)
            if b is not None and layer.base.bias is not None:
                layer.base.bias.copy_(b)
            parent_path, _, name = path.rpartition(".")
            setattr(self.model.get_submodule(parent_path), name, layer.base)
        self.layers = {}
        return self.model
