"""Adapters find every MLP neuron of tiny random models of every supported family; MoE LMs are refused."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

import pytest
import torch
import transformers as T
from torch import nn

from mnaft_core.models.adapters import UnsupportedModelError, neuron_sites, supported_families
from mnaft_core.models.tiny import tiny_model

TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 300}  # fmt: skip
MROPE = {"rope_type": "default", "mrope_section": [2, 1, 1]}
VIS = {"hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4}
GRID = {"image_size": 32, "patch_size": 8}
SIGLIP = T.SiglipVisionConfig(**VIS, image_size=32, patch_size=8).to_dict()
QWEN3_VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 40, "num_heads": 4, "out_hidden_size": 32,
                "patch_size": 8, "deepstack_visual_indexes": [0]}  # fmt: skip


def _auto(config: T.PretrainedConfig) -> nn.Module:
    return T.AutoModelForImageTextToText.from_config(config)


def _tiny(family: str) -> Callable[[], nn.Module]:
    """Config -> random model, for families beyond tiny.py's four (2 vision and 2 language layers)."""
    # fmt: off
    configs: dict[str, Callable[[], T.PretrainedConfig]] = {
        "qwen3-vl": lambda: T.Qwen3VLConfig(text_config={**TEXT, "rope_parameters": MROPE},
                                            vision_config=QWEN3_VISION),
        "llava-onevision": lambda: T.LlavaOnevisionConfig(vision_config=SIGLIP,
                                                          text_config=T.Qwen2Config(**TEXT).to_dict()),
        "gemma3": lambda: T.Gemma3Config(vision_config=SIGLIP, mm_tokens_per_image=4,
                                         text_config=T.Gemma3TextConfig(**TEXT).to_dict()),
        "internvl": lambda: T.InternVLConfig(vision_config={**VIS, "image_size": [32, 32],
                                                            "patch_size": [8, 8]},
                                             text_config=T.Qwen2Config(**TEXT).to_dict()),
        "idefics3": lambda: T.Idefics3Config(vision_config={**VIS, "image_size": 32, "patch_size": 8},
                                             text_config=T.LlamaConfig(**TEXT).to_dict()),
        "smolvlm": lambda: T.SmolVLMConfig(vision_config={**VIS, "image_size": 32, "patch_size": 8},
                                           text_config=T.LlamaConfig(**TEXT).to_dict()),
        "mistral3": lambda: T.Mistral3Config(vision_config={**VIS, **GRID, "head_dim": 8},
                                             text_config=T.MistralConfig(**TEXT).to_dict()),
        "paddleocr-vl": lambda: T.PaddleOCRVLConfig(vision_config={**VIS, "patch_size": 8}, text_config=TEXT),
        "gemma4": lambda: T.Gemma4Config(vision_config={**VIS, "head_dim": 8}, audio_config=None,
                                         text_config={**TEXT, "vocab_size_per_layer_input": 300}),
    }
    # fmt: on
    return lambda: _auto(configs[family]())


CASES: dict[str, tuple[Callable[[], nn.Module], int, int]] = {
    "qwen2-vl": (partial(tiny_model, "qwen2-vl"), 64, 64),
    "qwen2.5-vl": (partial(tiny_model, "qwen2.5-vl"), 48, 64),
    "llava-clip": (partial(tiny_model, "llava-clip"), 40, 64),
    "llava-siglip": (partial(tiny_model, "llava-siglip"), 40, 64),
    **{f: (_tiny(f), 40, 64) for f in ("qwen3-vl", "llava-onevision", "gemma3", "internvl", "idefics3",
                                       "smolvlm", "mistral3", "paddleocr-vl")},
}  # fmt: skip


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


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MNAFT_FAMILIES") != "all", reason="30 s to build: MNAFT_FAMILIES=all")
def test_gemma4_sites_cover_every_mlp(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny("gemma4")()
    monkeypatch.setitem(CASES, "gemma4", (lambda: model, 40, 64))
    test_sites_cover_every_mlp("gemma4")
    test_activation_module_feeds_output_projection("gemma4")


def test_unsupported_model_names_families_and_interface() -> None:
    model = T.GPT2LMHeadModel(T.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(UnsupportedModelError) as e:
        neuron_sites(model)
    msg = str(e.value)
    assert "'gpt2'" in msg and "qwen2-vl" in msg and "llava" in msg and "adapters/base.py" in msg
    assert set(supported_families()) == {
        "qwen2-vl", "qwen2.5-vl", "qwen3-vl", "llava", "llava-onevision", "gemma3", "gemma4", "internvl",
        "idefics3", "mistral3", "paddleocr-vl",
    }  # fmt: skip


def test_moe_language_models_are_refused_by_name() -> None:
    text = {**TEXT, "moe_intermediate_size": 16, "num_experts": 4, "num_experts_per_tok": 2,
            "rope_parameters": MROPE}  # fmt: skip
    model = _auto(T.Qwen3VLMoeConfig(text_config=text, vision_config=QWEN3_VISION))
    with pytest.raises(UnsupportedModelError, match=r"'qwen3_vl_moe'.*mixture-of-experts.*Qwen3-VL"):
        neuron_sites(model)
