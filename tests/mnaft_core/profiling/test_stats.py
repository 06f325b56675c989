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
    with recording(model, [rec]):
        out = model(input_ids=ids, labels=ids)
        assert len(captured) == len(sites) > 0  # one activation per language MLP, before backward
        for a in captured:
            a.retain_grad()
        out.loss.backward()
    for h in hooks:
        h.remove()
    stats = rec.flush()

    flat_groups = groups.reshape(-1)
    assert stats.tokens.sum() == (flat_groups >= 0).sum().item()  # padding (-1) counts nowhere
    for layer, a in enumerate(captured):
        af = a.detach().reshape(-1, a.shape[-1]).double()
        assert a.grad is not None, f"layer {layer}: backward did not reach the activation"
        grad = a.grad.reshape(af.shape).double()
        for g in range(len(GROUPS)):
            m = flat_groups == g
            assert stats.tokens[g] == m.sum().item()
            np.testing.assert_allclose(stats.active[g, layer], (af[m] > 0).sum(0).numpy())
            np.testing.assert_allclose(stats.sum[g, layer], af[m].sum(0).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                stats.sumsq[g, layer], (af[m] ** 2).sum(0).numpy(), rtol=1e-5, atol=1e-6
            )
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


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("qwen2-vl", torch.float32), ("llava-clip", torch.float32), ("qwen2.5-vl", torch.bfloat16)],
)
def test_vision_stats_match_direct_computation(name: str, dtype: torch.dtype) -> None:
    """A tower's recorder (one group for every token: column sums, no one-hot product) is exact too."""
    torch.manual_seed(0)
    model = CASES[name][0]().eval().to(dtype)
    sites = [s for s in neuron_sites(model) if s.module == "vision"]
    image = GROUPS.index("image")
    rec = ModuleRecorder(sites, sites[0].width(model), torch.device("cpu"), taylor=True, constant_group=image)
    captured: list[torch.Tensor] = []
    hooks = [
        s.mlp(model).get_submodule(s.act).register_forward_hook(lambda m, i, o: captured.append(o))
        for s in sites
    ]
    x = torch.randn(2, 9, s_in := sites[0].mlp(model).get_submodule(sites[0].in_projs[0]).in_features)
    with recording(model, [rec]):
        for n_tokens in (9, 6):  # the second forward is shorter: the scratch buffers are reused
            h = x[:, :n_tokens].to(dtype).requires_grad_(True)
            loss = torch.zeros(())
            for s in sites:
                h = s.mlp(model)(h)
                loss = loss + (h.float() * torch.linspace(-1, 1, s_in)).sum()
            for a in captured[-len(sites) :]:
                a.retain_grad()
            loss.backward()
    for hk in hooks:
        hk.remove()
    stats = rec.flush()
    assert len(captured) == 2 * len(sites) > 0  # two forwards, each through every tower MLP
    assert stats.tokens[image] == 2 * (9 + 6) and stats.tokens.sum() == stats.tokens[image]
    for layer in range(len(sites)):
        pair = captured[layer :: len(sites)]
        af = torch.cat([a.detach().reshape(-1, a.shape[-1]).double() for a in pair])
        grad = torch.cat([a.grad.reshape(-1, a.shape[-1]).double() for a in pair])  # type: ignore[union-attr]
        np.testing.assert_array_equal(stats.active[image, layer], (af > 0).sum(0).numpy())
        np.testing.assert_allclose(stats.sum[image, layer], af.sum(0).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats.sumsq[image, layer], (af**2).sum(0).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            stats.taylor[image, layer], (af * grad).abs().sum(0).numpy(), rtol=1e-4, atol=1e-6
        )
        for other in range(len(GROUPS)):
            if other != image:
                assert not stats.active[other, layer].any() and not stats.taylor[other, layer].any()
    assert stats.taylor.sum() > 0


def _chunked_run(name: str, chunk: int) -> tuple[dict[str, object], np.ndarray]:
    torch.manual_seed(0)
    model = CASES[name][0]().eval()
    sites = [s for s in neuron_sites(model) if s.module == "language"]
    rec = ModuleRecorder(sites, sites[0].width(model), torch.device("cpu"), taylor=True, sample_slots=4,
                         chunk_tokens=chunk)  # fmt: skip
    ids = torch.randint(0, 290, (2, 7), generator=torch.Generator().manual_seed(1))
    rec.group_ids = torch.tensor([[0, 0, 1, 1, 2, 2, -1], [0, 1, 1, 2, 2, 2, 2]]).reshape(-1)
    rec.sample_offset, rec.batch_samples = 1, 2
    with recording(model, [rec]):
        model(input_ids=ids, labels=ids).loss.backward()
    assert rec._ws is not None and rec._ws.shape[1] == min(chunk, 14)  # the scratch bound holds
    assert rec._tws is not None and rec._tws.shape[0] == min(chunk, 14)
    return vars(rec.flush()), rec.flush_samples()


@pytest.mark.parametrize("chunk", [1, 3, 5])
def test_chunked_statistics_equal_unchunked(chunk: int) -> None:
    """Scratch for ``chunk`` tokens at a time gives the statistics of one pass over all 14 tokens."""
    whole, whole_means = _chunked_run("qwen2-vl", 10_000)
    part, part_means = _chunked_run("qwen2-vl", chunk)
    for key in ("tokens", "active"):  # counts: exact
        np.testing.assert_array_equal(part[key], whole[key])
    for key in ("sum", "sumsq", "taylor"):  # float32 sums in another order
        np.testing.assert_allclose(part[key], whole[key], rtol=1e-5, atol=1e-7)
        assert np.abs(whole[key]).sum() > 0
    np.testing.assert_allclose(part_means, whole_means, rtol=1e-3, equal_nan=True)  # float16 means
    assert np.isnan(whole_means[0]).all() and not np.isnan(whole_means[1:3]).any()


def test_chunk_size_must_be_positive() -> None:
    model = CASES["qwen2-vl"][0]()
    sites = [s for s in neuron_sites(model) if s.module == "language"]
    with pytest.raises(ValueError, match="chunk_tokens must be >= 1, got 0"):
        ModuleRecorder(sites, sites[0].width(model), torch.device("cpu"), chunk_tokens=0)


def test_neuron_abs_grad_is_the_hand_computed_sum_over_each_neurons_slices() -> None:
    import torch
    from torch import nn

    from mnaft_core.profiling.stats import GradientRecorder, neuron_abs_grad

    # y = down(up(x)) with an identity activation; L = y summed: dL/d up.W[j] = down.W[0, j] * x,
    # dL/d down.W[0, j] = up.W[j] . x. Two neurons, x = (1, -2).
    up, down = nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        up.weight.copy_(torch.tensor([[1.0, 2.0], [-3.0, 0.5]]))
        down.weight.copy_(torch.tensor([[4.0, -1.0]]))
    x = torch.tensor([[1.0, -2.0]])
    down(up(x)).sum().backward()
    # neuron 0: |4*1| + |4*-2| + |1 - 4| = 4 + 8 + 3 = 15; neuron 1: |-1| + |2| + |-3 - 1| = 1 + 2 + 4 = 7
    assert up.weight.grad is not None and down.weight.grad is not None
    got = neuron_abs_grad([(up.weight.grad, 0), (down.weight.grad, 1)], 2)
    assert got.tolist() == [15.0, 7.0]
    with pytest.raises(ValueError, match="no 3 neurons on axis 0"):
        neuron_abs_grad([(up.weight.grad, 0)], 3)
    # the recorder adds |dL/dW| per backward (absolute value per batch), then drops the gradients
    rec = GradientRecorder([[(up.weight, 0), (down.weight, 1)]], 2, torch.device("cpu"))
    rec.collect()
    assert up.weight.grad is None
    down(up(-x)).sum().backward()  # the opposite gradient: cancels in a sum, adds in a sum of |.|
    rec.collect()
    np.testing.assert_array_equal(rec.flush(), [[30.0, 14.0]])
    np.testing.assert_array_equal(rec.flush(), [[0.0, 0.0]])
