"""A model whose MLP projections are not plain Linear layers is refused with its path named."""

from __future__ import annotations

import pytest
import torch

from mnaft_core.models.adapters import UnsupportedModelError, neuron_sites
from mnaft_core.models.adapters.base import indexed_children
from tests.mnaft_core.models.test_adapters import CASES


class _Packed(torch.nn.Module):
    """Stands in for a quantized or fused projection: same job, no weight slices to index."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_non_linear_projections_are_named() -> None:
    model = CASES["qwen2-vl"][0]()
    site = neuron_sites(model)[-1]
    setattr(site.mlp(model), site.out_proj, _Packed())
    with pytest.raises(UnsupportedModelError, match=rf"{site.path}\.{site.out_proj} is _Packed, not torch"):
        site.width(model)
    with pytest.raises(UnsupportedModelError, match=r"is _Packed"):
        site.parameter_slices(model)
    with pytest.raises(UnsupportedModelError, match="expected the ModuleList of its layers"):
        indexed_children(model, site.path)
