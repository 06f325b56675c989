"""Adapters find every MLP neuron of tiny random Qwen2-VL, Qwen2.5-VL and LLaVA models."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
import transformers as T
from torch import nn

from mnaft_core.models.adapters import UnsupportedModelError, neuron_sites, supported_families
from mnaft_core.models.tiny import tiny_model

CASES: dict[str, tuple[Callable[[], nn.Module], int, int]] = {
    "qwen2-vl": (partial(tiny_model, "qwen2-vl"), 64, 64),
    "qwen2.5-vl": (partial(tiny_model, "qwen2.5-vl"), 48, 64),
    "llava-clip": (partial(tiny_model, "llava-clip"), 40, 64),
    "llava-siglip": (partial(tiny_model, "llava-siglip"), 40, 64),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sites_cover_every_mlp(name: str) -> None:
    build, vision_width, text_width = CASES[name]
    model = build()
    sites = neuron_sites(model)
    assert [(s.module, s.layer) for s in sites] == [
        ("vision", 0),
        ("vision", 1),
        ("language", 0),
        ("language", 1),
    ]
    for s in sites:
        assert s.width(model) == (vision_width if s.module == "vision" else text_width)
        slices = s.parameter_slices(model)
        params = dict(model.named_parameters())
        for pname, (kind, axis) in slices.items():
            assert params[pname].shape[axis] == s.width(model), pname
            assert kind == ("out" if axis == 1 else "in")
        # the MLP's parameters are exactly the neuron slices plus the output bias (shared by all neurons)
        own = {n for n in params if n.startswith(s.path + ".")}
        assert own - set(slices) <= {f"{s.path}.{s.out_proj}.bias"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_activation_module_feeds_output_projection(name: str) -> None:
    """For fc1->act->fc2 the recorded activation is exactly what fc2 sees; for gated MLPs it is the gate."""
    model = CASES[name][0]()
    site = neuron_sites(model)[0]
    mlp = site.mlp(model)
    seen: dict[str, torch.Tensor] = {}
    mlp.get_submodule(site.act).register_forward_hook(lambda m, i, o: seen.__setitem__("act", o))
    mlp.get_submodule(site.out_proj).register_forward_hook(lambda m, i, o: seen.__setitem__("out_in", i[0]))
    x = torch.randn(5, mlp.get_submodule(site.in_projs[0]).in_features)
    mlp(x)
    assert seen["act"].shape[-1] == site.width(model)
    if len(site.in_projs) == 1:
        torch.testing.assert_close(seen["act"], seen["out_in"])
    else:
        up = mlp.get_submodule(site.in_projs[1])
        torch.testing.assert_close(seen["act"] * up(x), seen["out_in"])


def test_unsupported_model_names_families_and_interface() -> None:
    model = T.GPT2LMHeadModel(T.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedModelError) as e:
        neuron_sites(model)
    msg = str(e.value)
    assert "'gpt2'" in msg and "qwen2-vl" in msg and "llava" in msg and "adapters/base.py" in msg
    assert set(supported_families()) == {"qwen2-vl", "qwen2.5-vl", "llava"}
