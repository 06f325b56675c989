from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText

from mnaft_core.selection.mask import model_fingerprint
from mnaft_core.training.export import apply_neuron_delta, save_neuron_delta
from mnaft_core.training.neuron_delta import NeuronDeltaModel
from tests.mnaft_core.models.test_adapters import CASES
from tests.mnaft_core.training.test_neuron_delta import _mask


def test_delta_round_trip_is_exact_and_merged_checkpoint_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    mask = _mask(model)
    wrapped = NeuronDeltaModel(model, mask, model_fingerprint(model))
    with torch.no_grad():
        for _, p in wrapped.trainable_parameters():
            p.normal_(0, 0.1)
    merged = wrapped.merge()
    n = save_neuron_delta(merged, mask, tmp_path / "delta.safetensors", mask_ref="select/abc")
    assert 0 < n < sum(p.numel() for p in merged.parameters()) / 2

    torch.manual_seed(0)
    fresh = CASES["qwen2-vl"][0]()
    fresh.load_state_dict(base_state)
    apply_neuron_delta(fresh, tmp_path / "delta.safetensors")
    for k, v in merged.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k

    merged.save_pretrained(tmp_path / "merged")  # a plain HF checkpoint, no mnaft needed to load it
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "merged")
    for k, v in merged.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_delta_for_another_model_is_refused(tmp_path: Path) -> None:
    model = CASES["qwen2-vl"][0]()
    save_neuron_delta(model, _mask(model), tmp_path / "d.safetensors")
    with pytest.raises(ValueError, match="does not exist in"):
        apply_neuron_delta(CASES["llava-clip"][0](), tmp_path / "d.safetensors")
