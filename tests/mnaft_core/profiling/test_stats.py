"""The hook accumulator agrees with statistics computed directly from captured activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnaft_core.models.adapters import neuron_sites
from mnaft_core.profiling.stats import GROUPS, ModuleRecorder, recording
from tests.mnaft_core.models.test_adapters import CASES


@pytest.mark.parametrize("point", ["act", "product"])
def test_language_stats_match_direct_computation(point: str) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]().eval()
    sites = [s for s in neuron_sites(model) if s.module == "language"]
    rec = ModuleRecorder(sites, sites[0].width(model), torch.device("cpu"), point=point, taylor=True)
    ids = torch.randint(0, 290, (2, 7))
    groups = torch.tensor([[0, 0, 1, 1, 2, 2, -1], [0, 1, 1, 2, 2, 2, 2]])
    rec.group_ids = groups.reshape(-1)

    captured: list[torch.Tensor] = []
    hooks = []
    for s in sites:
        mlp = s.mlp(model)
        if point == "act":
            hooks.append(mlp.get_submodule(s.act).register_forward_hook(lambda m, i, o: captured.append(o)))
        else:
            hooks.append(
                mlp.get_submodule(s.out_proj).register_forward_pre_hook(lambda m, i: captured.append(i[0]))
            )
    for a in captured:
        a.retain_grad()
    with recording(model, [rec]):
        out = model(input_ids=ids, labels=ids)
        for a in captured:
            a.retain_grad()
        out.loss.backward()
    for h in hooks:
        h.remove()
    stats = rec.flush()

    flat_groups = groups.reshape(-1)
    for layer, a in enumerate(captured):
        af = a.detach().reshape(-1, a.shape[-1]).double()
        grad = a.grad.reshape(af.shape).double() if a.grad is not None else None
        for g in range(len(GROUPS)):
            m = flat_groups == g
            assert stats.tokens[g] == m.sum().item()
            np.testing.assert_allclose(stats.active[g, layer], (af[m] > 0).sum(0).numpy())
            np.testing.assert_allclose(stats.sum[g, layer], af[m].sum(0).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                stats.sumsq[g, layer], (af[m] ** 2).sum(0).numpy(), rtol=1e-5, atol=1e-6
            )
            if grad is not None:
                np.testing.assert_allclose(
                    stats.taylor[g, layer], (af[m] * grad[m]).abs().sum(0).numpy(), rtol=1e-4, atol=1e-7
                )
    assert stats.taylor.sum() > 0, "backward must reach the Taylor hooks"
    # flush zeroes the device buffers
    assert rec.flush().active.sum() == 0


def test_group_id_mismatch_is_named() -> None:
    model = CASES["qwen2-vl"][0]().eval()
    sites = [s for s in neuron_sites(model) if s.module == "language"]
    rec = ModuleRecorder(sites, sites[0].width(model), torch.device("cpu"))
    rec.group_ids = torch.zeros(3, dtype=torch.long)
    with (
        recording(model, [rec]),
        pytest.raises(RuntimeError, match="language recorder: group ids for 3 tokens"),
    ):
        model(input_ids=torch.zeros(1, 5, dtype=torch.long))
