from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.models.tiny import save_tiny
from mnaft_core.selection.mask import model_fingerprint
from mnaft_core.training.export import apply_neuron_delta, export_dtype, save_checkpoint, save_neuron_delta
from mnaft_core.training.neuron_delta import NeuronDeltaModel
from tests.families.reload import draw_image, plain, project
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


def test_merged_checkpoint_of_a_bf16_base_is_a_standard_bf16_checkpoint(tmp_path: Path) -> None:
    base = save_tiny("qwen2-vl", tmp_path / "base")
    AutoModelForImageTextToText.from_pretrained(base).to(torch.bfloat16).save_pretrained(base)
    loaded = load_mllm(ModelConfig(name_or_path=str(base), device="cpu", local_files_only=True))
    assert loaded.saved_dtype == torch.bfloat16 and next(loaded.model.parameters()).dtype == torch.float32
    with torch.no_grad():  # stands in for training: the merged model differs from the base
        loaded.model.model.language_model.layers[0].mlp.down_proj.weight.add_(0.01)
    card = {"base_model": str(base), "method": "mnaft", "mask_ref": "select/abc", "data_ref": "data/def"}
    out = tmp_path / "merged"
    save_checkpoint(
        loaded.model, loaded.processor, out, dtype=export_dtype("base", loaded.saved_dtype), card=card
    )

    assert {t.dtype for t in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert next(loaded.model.parameters()).dtype == torch.float32  # only the saved copy was cast
    assert (out / "preprocessor_config.json").is_file()
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert not set(tok_cfg) & {"local_files_only", "is_local", "name_or_path"}, tok_cfg
    readme = (out / "README.md").read_text()
    assert all(
        s in readme for s in ("library_name: transformers", str(base), "mnaft", "select/abc", "data/def")
    )

    image = draw_image(tmp_path / "img.png")
    report = plain(out, image)
    assert report["modules"] == [] and report["image_processor"] == "Qwen2VLImageProcessorPil"
    assert report["tokens"] == project(out, image)


def test_save_dtype_can_be_asked_for(tmp_path: Path) -> None:
    assert export_dtype("float32", torch.bfloat16) == torch.float32
    assert export_dtype("base", torch.float16) == torch.float16
