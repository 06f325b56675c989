from __future__ import annotations

import json
import re
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


DOC = Path(__file__).resolve().parents[3] / "docs" / "mask-format.md"


def _doc_fields() -> tuple[list[str], list[str]]:
    """The header keys of the doc's metadata table, and the fields it names for each ``sites`` entry."""
    text = DOC.read_text()
    table = text[text.index("## Header metadata") : text.index("`parameters` maps")]
    keys = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    (sites_row,) = [line for line in table.splitlines() if line.startswith("| `sites` |")]
    entry = re.search(r"`\{(.*)\}`", sites_row)
    assert entry is not None
    fields = [part.split(":")[0].strip() for part in re.sub(r"\{[^}]*\}", "", entry.group(1)).split(",")]
    return keys, fields


def test_the_file_holds_every_field_the_doc_names_without_the_model(tmp_path: Path) -> None:
    from safetensors import safe_open

    from mnaft_core.selection.mask import HEADER_FIELDS, SITE_FIELDS, site_parameters

    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    mask = _mask(model)
    for path, params in site_parameters(model).items():  # what the profile records, then select copies
        mask.sites[path].parameters = params
    mask.save(tmp_path / "mask.safetensors")  # no model object
    keys, fields = _doc_fields()
    assert keys == list(HEADER_FIELDS) and fields == list(SITE_FIELDS)
    with safe_open(str(tmp_path / "mask.safetensors"), framework="numpy") as f:
        meta = f.metadata()
    assert sorted(meta) == sorted(keys)
    sites = json.loads(meta["sites"])
    site = neuron_sites(model)[-1]
    assert sorted(sites[site.path]) == sorted(fields)
    names = {
        f"{site.path}.{p}.weight": axis for p, axis in (("gate_proj", 0), ("up_proj", 0), ("down_proj", 1))
    }
    assert sites[site.path]["parameters"] == names
    back = NeuronMask.load(tmp_path / "mask.safetensors")
    assert {p: s.parameters for p, s in back.sites.items()} == site_parameters(model)
    with pytest.raises(MaskError, match="has no parameter slices"):
        _mask(model).save(tmp_path / "bare.safetensors")


def _rewrite(src: Path, dst: Path, meta: dict[str, str] | None = None, **tensors: np.ndarray) -> Path:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(src), framework="numpy") as f:
        data = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        old = dict(f.metadata())
    save_file({**data, **tensors}, str(dst), metadata=meta if meta is not None else old)
    return dst


def test_load_names_the_field_at_fault(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CASES["qwen2-vl"][0]()
    good = tmp_path / "mask.safetensors"
    _mask(model).save(good, model)
    from safetensors import safe_open

    with safe_open(str(good), framework="numpy") as f:
        meta = dict(f.metadata())
    site = neuron_sites(model)[0].path
    sites = json.loads(meta["sites"])
    cases = {
        "header metadata lacks counts": {k: v for k, v in meta.items() if k != "counts"},
        "module 'audio' is not one of": {**meta, "sites": json.dumps({**sites, site: {**sites[site],
                                                                                      "module": "audio"}})},
        "expected fields module, layer, width, parameters": {
            **meta, "sites": json.dumps({**sites, site: {"module": "vision", "layer": 0, "width": 8}})
        },
        "header 'thresholds' is not JSON": {**meta, "thresholds": "{nope"},
    }  # fmt: skip
    for i, (message, bad_meta) in enumerate(cases.items()):
        with pytest.raises(MaskError, match=re.escape(message)):
            NeuronMask.load(_rewrite(good, tmp_path / f"bad{i}.safetensors", bad_meta))
    unsorted = _rewrite(
        good, tmp_path / "unsorted.safetensors", **{f"{site}::agnostic": np.array([3, 0], np.int32)}
    )
    with pytest.raises(MaskError, match=r"agnostic\): indices must be sorted"):
        NeuronMask.load(unsorted)
    both = _rewrite(good, tmp_path / "both.safetensors", **{f"{site}::agnostic": np.array([0, 1], np.int32)})
    with pytest.raises(MaskError, match="both agnostic and specific"):
        NeuronMask.load(both)
    wide = _rewrite(good, tmp_path / "dtype.safetensors", **{f"{site}::agnostic": np.array([0, 3], np.int64)})
    with pytest.raises(MaskError, match="expected 1-D int32"):
        NeuronMask.load(wide)
    recount = _rewrite(good, tmp_path / "count.safetensors", **{f"{site}::agnostic": np.array([0], np.int32)})
    with pytest.raises(MaskError, match="counts disagree"):
        NeuronMask.load(recount)
