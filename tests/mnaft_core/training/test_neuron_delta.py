"""Masked training changes exactly the masked slices, and only those of the batch's languages."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mnaft_core.models.adapters import neuron_sites
from mnaft_core.selection.mask import NeuronMask, SiteMask, model_fingerprint
from mnaft_core.training.neuron_delta import NeuronDeltaModel, group_neurons
from tests.mnaft_core.models.test_adapters import CASES


def _mask(model: torch.nn.Module) -> NeuronMask:
    sites = {}
    for s in neuron_sites(model):
        sites[s.path] = SiteMask(
            s.module, s.layer, s.width(model),
            agnostic=np.array([0, 3], np.int32),
            specific={"de": np.array([1, 5, 7], np.int32), "zh-Hans": np.array([7, 9], np.int32)},
        )  # fmt: skip
    return NeuronMask(model_fingerprint(model), sites)


def _image_inputs(vocab_image_token: int = 299) -> dict[str, torch.Tensor]:
    """One 16x16 image per sample: a 2x2 grid of 8 px patches, merged 2x2 into one <|image_pad|> token."""
    ids = torch.randint(0, 290, (2, 8))
    ids[:, 1] = vocab_image_token
    return {
        "input_ids": ids,
        "pixel_values": torch.randn(8, 3 * 2 * 8 * 8),
        "image_grid_thw": torch.tensor([[1, 2, 2], [1, 2, 2]]),
        "mm_token_type_ids": (ids == vocab_image_token).long(),
        "labels": ids,
    }


def test_grouping_is_a_partition() -> None:
    groups = group_neurons(np.array([0, 3]), {"de": np.array([1, 5, 7, 3]), "zh": np.array([7, 9])})
    assert [(g.name, g.index.tolist()) for g in groups] == [
        ("agnostic", [0, 3]), ("de", [1, 5]), ("de+zh", [7]), ("zh", [9]),
    ]  # fmt: skip


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl", "llava-clip"])
def test_zero_delta_is_exactly_the_base(family: str) -> None:
    torch.manual_seed(0)
    model = CASES[family][0]().eval()
    ids = torch.randint(0, 290, (2, 6))
    ref = model(input_ids=ids).logits
    wrapped = NeuronDeltaModel(model, _mask(model))
    torch.testing.assert_close(wrapped(input_ids=ids).logits, ref, rtol=0, atol=0)


def test_training_changes_only_masked_slices_of_active_languages() -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    mask = _mask(model)
    wrapped = NeuronDeltaModel(model, mask, model_fingerprint(model))
    params = [p for _, p in wrapped.trainable_parameters()]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.5)
    inputs = _image_inputs()
    with wrapped.languages(["de", "en"]):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            wrapped(**inputs).loss.backward()
            opt.step()
    # the zh-only group got no gradient: no optimizer state, still exactly zero
    for layer in wrapped.layers.values():
        for g, d in zip(layer.groups, layer.delta, strict=True):
            if g.name == "zh-Hans":
                assert d.grad is None and d not in opt.state and torch.count_nonzero(d) == 0
            else:
                assert torch.count_nonzero(d) > 0, g.name
    n_state = sum(
        t.numel() for st in opt.state.values() for t in st.values() if torch.is_tensor(t) and t.dim()
    )
    assert n_state <= 2 * wrapped.num_trainable()

    merged = wrapped.merge()
    after = merged.state_dict()
    assert set(after) == set(base), "merge restores the original parameter names"
    dense = mask.dense(merged, languages=["de"])  # agnostic + de (+ de+zh) neurons
    for name, before in base.items():
        changed = after[name] != before
        if name in dense:
            assert not changed[~dense[name]].any(), f"{name}: an entry outside the mask changed"
            assert changed[dense[name]].any(), f"{name}: no masked entry changed"
        else:
            assert not changed.any(), f"{name} is outside every mask and must be bit-identical"


def test_delta_gradients_are_the_dense_gradients_of_their_slices() -> None:
    """The deltas' forward and backward equal a dense model's on the same weights, slice by slice."""
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    dense = copy.deepcopy(model)
    wrapped = NeuronDeltaModel(model, _mask(model))
    wrapped.activate(["de"])  # zh-Hans-only neurons stay out
    with torch.no_grad():
        for layer in wrapped.layers.values():
            for i in layer.active:
                layer.delta[i].normal_(0, 0.05)
                if len(layer.delta_bias):
                    layer.delta_bias[i].normal_(0, 0.05)
    merged = {}
    for path, layer in wrapped.layers.items():
        w, b = layer.merged_weight()  # inactive deltas are zero: the merge is the active forward
        merged[f"{path}.weight"] = w
        if b is not None:
            merged[f"{path}.bias"] = b
    dense.load_state_dict(merged, strict=False)
    inputs = _image_inputs()
    loss = wrapped(**inputs).loss
    loss.backward()
    ref = dense(**inputs).loss
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    dense_params = dict(dense.named_parameters())
    for path, layer in wrapped.layers.items():
        grad_w = dense_params[f"{path}.weight"].grad
        assert grad_w is not None
        for i, g in enumerate(layer.groups):
            d = layer.delta[i]
            if i not in layer.active:
                assert d.grad is None, f"{path} {g.name}: an inactive group got a gradient"
                continue
            assert d.grad is not None
            expect = grad_w[g.index] if layer.axis == 0 else grad_w[:, g.index]
            torch.testing.assert_close(d.grad, expect, rtol=1e-4, atol=1e-7, msg=f"{path} {g.name}")
            if len(layer.delta_bias):
                grad_b = dense_params[f"{path}.bias"].grad
                assert grad_b is not None and layer.delta_bias[i].grad is not None
                torch.testing.assert_close(layer.delta_bias[i].grad, grad_b[g.index], rtol=1e-4, atol=1e-7)


def test_merged_forward_matches_wrapped_forward() -> None:
    torch.manual_seed(0)
    model = CASES["qwen2.5-vl"][0]().eval()
    wrapped = NeuronDeltaModel(model, _mask(model))
    with torch.no_grad():
        for _, p in wrapped.trainable_parameters():
            p.normal_(0, 0.05)
    ids = torch.randint(0, 290, (2, 6))
    out = wrapped(input_ids=ids).logits
    merged = wrapped.merge()
    torch.testing.assert_close(merged(input_ids=ids).logits, out, rtol=1e-4, atol=1e-5)
    assert not any(type(m).__name__ == "NeuronDeltaLinear" for m in merged.modules())


def test_trainable_count_scales_with_mask() -> None:
    model = CASES["qwen2-vl"][0]()
    wrapped = NeuronDeltaModel(model, _mask(model))
    n = 6  # distinct masked neurons per site: 0,1,3,5,7,9
    expected = 0
    for s in neuron_sites(model):
        mlp = s.mlp(model)
        for name in s.in_projs:
            lin = mlp.get_submodule(name).base  # type: ignore[union-attr]
            expected += n * lin.in_features + (n if lin.bias is not None else 0)
        expected += mlp.get_submodule(s.out_proj).base.out_features * n  # type: ignore[union-attr]
    assert wrapped.num_trainable() == expected
