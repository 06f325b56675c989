"""Adapters find every MLP neuron of tiny random Qwen2-VL, Qwen2.5-VL and LLaVA models."""

from __future__ import annotations

import pytest
import torch
import transformers as T
from torch import nn

from mnaft_core.models.adapters import UnsupportedModelError, neuron_sites, supported_families

TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,
}
MROPE = {"rope_type": "default", "mrope_section": [2, 1, 1]}
IDS = {"image_token_id": 299, "video_token_id": 298, "vision_start_token_id": 297, "vision_end_token_id": 296}


def _qwen2_vl() -> nn.Module:
    cfg = T.Qwen2VLConfig(
        text_config={**TEXT, "rope_parameters": MROPE},
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 4,
            "mlp_ratio": 2,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        **IDS,
    )
    return T.Qwen2VLForConditionalGeneration(cfg)


def _qwen2_5_vl() -> nn.Module:
    cfg = T.Qwen2_5_VLConfig(
        text_config={**TEXT, "rope_parameters": MROPE},
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_heads": 4,
            "out_hidden_size": 32,
            "patch_size": 8,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "fullatt_block_indexes": [1],
            "window_size": 32,
        },
        **IDS,
    )
    return T.Qwen2_5_VLForConditionalGeneration(cfg)


def _llava(siglip: bool = False) -> nn.Module:
    vis = {
        "hidden_size": 32,
        "intermediate_size": 40,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    vision = T.SiglipVisionConfig(**vis) if siglip else T.CLIPVisionConfig(**vis)
    cfg = T.LlavaConfig(vision_config=vision, text_config=T.LlamaConfig(**TEXT), image_token_id=299)
    return T.LlavaForConditionalGeneration(cfg)


CASES = {
    "qwen2-vl": (_qwen2_vl, 64, 64),
    "qwen2.5-vl": (_qwen2_5_vl, 48, 64),
    "llava-clip": (_llava, 40, 64),
    "llava-siglip": (lambda: _llava(siglip=True), 40, 64),
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
