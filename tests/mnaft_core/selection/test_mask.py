from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mnaft_core.models.adapters import neuron_sites
from mnaft_core.selection.mask import MaskError, NeuronMask, SiteMask, model_fingerprint
from tests.mnaft_core.models.test_adapters import CASES


def _mask(model: torch.nn.Module) -> NeuronMask:
    sites = {}
    for s in neuron_sites(model):
        w = s.width(model)
        sites[s.path] = SiteMask(
            s.module, s.layer, w, agnostic=np.array([0, 3], np.int32),
            specific={"de": np.array([1, 5], np.int32), "zh-Hans": np.array([5, w - 1], np.int32)},
        )  # fmt: skip
    return NeuronMask(model_fingerprint(model), sites, data_key="abc", thresholds={"top_rate": 0.01})


def test_round_trip_and_dense(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    mask = _mask(model)
    mask.save(tmp_path / "mask.safetensors", model)
    back = NeuronMask.load(tmp_path / "mask.safetensors")
    assert back.fingerprint == mask.fingerprint and back.thresholds == {"top_rate": 0.01}
    assert back.languages == ["de", "zh-Hans"]
    for p, s in mask.sites.items():
        np.testing.assert_array_equal(back.sites[p].agnostic, s.agnostic)
        np.testing.assert_array_equal(back.sites[p].specific["de"], s.specific["de"])
    back.check(model, model_fingerprint(model))
    site = neuron_sites(model)[-1]
    dense = back.dense(model, languages=["de"])
    down = dense[f"{site.path}.down_proj.weight"]
    assert down[:, [0, 1, 3, 5]].all() and down.sum() == 4 * down.shape[0]
    gate = dense[f"{site.path}.gate_proj.weight"]
    assert gate[[0, 1, 3, 5]].all() and gate.sum() == 4 * gate.shape[1]


def test_fingerprint_follows_weights_not_dtype() -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    fp = model_fingerprint(model)
    assert model_fingerprint(model) == fp
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert model_fingerprint(model) != fp
    half = CASES["qwen2-vl"][0]().to(torch.bfloat16)
    assert model_fingerprint(half) == model_fingerprint(half.float())


def test_mask_for_another_model_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    mask = _mask(model)
    other = CASES["qwen2.5-vl"][0]()
    with pytest.raises(MaskError, match="was made for model"):
        mask.check(other, model_fingerprint(other))
    with pytest.raises(MaskError, match="has width 64, the model's MLP has 48"):
        mask.check(other)
    llava = CASES["llava-clip"][0]()
    with pytest.raises(MaskError, match="does not exist in LlavaForConditionalGeneration"):
        mask.check(llava)


def test_bad_files_are_named(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, np.int32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(MaskError, match="not a neuron mask"):
        NeuronMask.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(MaskError, match="cannot read neuron mask"):
        NeuronMask.load(tmp_path / "junk.safetensors")
