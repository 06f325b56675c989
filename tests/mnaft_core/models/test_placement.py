"""A model split by accelerate's device_map (part of it offloaded to disk) profiles and generates exactly
as the same model on one device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import load_mllm
from mnaft_core.models.placement import input_device
from mnaft_core.models.prompts import Example, generate
from mnaft_core.models.tiny import save_tiny
from mnaft_core.profiling.runner import ProfileConfig, plan, run_profile
from mnaft_core.profiling.stats import STATS
from mnaft_core.profiling.zarr_stats import condition_totals
from tests.mnaft_core.profiling.test_runner import _samples


def test_placement_fields_are_validated() -> None:
    with pytest.raises(ValueError, match=r"max_memory / model\.offload_folder need model\.device_map"):
        ModelConfig(max_memory={"cpu": "1GiB"})
    with pytest.raises(ValueError, match="max_memory key 'gpu0' is not a GPU index"):
        ModelConfig(device_map="auto", max_memory={"gpu0": "1GiB"})


@pytest.mark.slow
def test_a_model_split_to_disk_gives_the_single_device_statistics(tmp_path: Path) -> None:
    path = save_tiny("qwen2-vl", tmp_path / "tiny")
    whole = load_mllm(ModelConfig(name_or_path=str(path), device="cpu"))
    weights = sum(p.numel() * p.element_size() for p in whole.model.parameters())
    # half the weights fit in "CPU memory": accelerate offloads the rest to disk, block by block
    split = load_mllm(ModelConfig(name_or_path=str(path), device_map="auto",
                                  max_memory={"cpu": str(weights // 2)},
                                  offload_folder=str(tmp_path / "offload")))  # fmt: skip
    placed = set(split.model.hf_device_map.values())
    assert "disk" in placed and "cpu" in placed, split.model.hf_device_map
    assert input_device(split.model) == torch.device("cpu") == split.device
    assert any(p.device.type == "meta" for p in split.model.parameters())  # really not in memory

    cfg = ProfileConfig(shard_size=2, batch_size=2, taylor=True)
    the_plan = plan(_samples(), cfg)
    a = run_profile(whole.model, whole.processor, the_plan, cfg, tmp_path / "a.zarr", {}, progress=False)
    b = run_profile(split.model, split.processor, the_plan, cfg, tmp_path / "b.zarr", {}, progress=False)
    for module in ("vision", "language"):
        ta, tb = condition_totals(a, module), condition_totals(b, module)
        assert ta.keys() == tb.keys()
        for c in ta:
            np.testing.assert_array_equal(tb[c].tokens, ta[c].tokens)
            for stat in STATS:
                np.testing.assert_allclose(getattr(tb[c], stat), getattr(ta[c], stat), rtol=1e-5, atol=1e-6)
        assert any(ta[c].sum.any() for c in ta) and any(ta[c].taylor.any() for c in ta)

    s = _samples()[0]
    ex = [Example("translate_image", s.src, s.tgt, image=s.pil())]
    assert generate(split.model, split.processor, ex, max_new_tokens=4) == generate(
        whole.model, whole.processor, ex, max_new_tokens=4
    )
