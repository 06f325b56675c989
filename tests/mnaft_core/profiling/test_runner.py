"""The profiling loop on a saved tiny Qwen2-VL: padding-free statistics, resume, disjoint workers."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image, ImageDraw

from mnaft_core.data.dataset import Sample
from mnaft_core.models.config import ModelConfig
from mnaft_core.models.loading import LoadedModel, load_mllm
from mnaft_core.models.tiny import save_tiny
from mnaft_core.profiling import runner
from mnaft_core.profiling.runner import ProfileConfig, plan, run_profile
from mnaft_core.profiling.stats import STATS
from mnaft_core.profiling.zarr_stats import condition_totals, pending_shards, sample_means

WORDS = {("de", "en"): [("Datei", "File"), ("Öffnen", "Open"), ("Hilfe", "Help"), ("Ende", "End"),
                        ("Neu", "New")],
         ("zh-Hans", "en"): [("文件", "File"), ("打开", "Open"), ("帮助", "Help")]}  # fmt: skip


def _png(text: str, width: int) -> bytes:
    img = Image.new("RGB", (width, 32), "white")
    ImageDraw.Draw(img).text((4, 8), text, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _samples() -> list[Sample]:
    # different widths: images of one batch have different token counts, so padding is exercised
    return [
        Sample(f"{src}{i}", src, tgt, s, t, _png(s, 64 + 32 * (i % 3)))
        for (src, tgt), pairs in WORDS.items()
        for i, (s, t) in enumerate(pairs)
    ]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    path = save_tiny("qwen2-vl", tmp_path_factory.mktemp("tiny") / "qwen2-vl")
    return load_mllm(ModelConfig(name_or_path=str(path), device="cpu"))


def _profile(loaded: LoadedModel, out: Path, **kw: object) -> zarr.Group:
    cfg = ProfileConfig(**{"shard_size": 2, "batch_size": 2, **kw})  # type: ignore[arg-type]
    return run_profile(loaded.model, loaded.processor, plan(_samples(), cfg), cfg, out, {"fingerprint": "f"},
                       progress=False)  # fmt: skip


def test_plan_is_conditions_by_modality_with_fixed_shards() -> None:
    p = plan(_samples(), ProfileConfig(shard_size=2, max_samples_per_direction=4))
    assert [c.name for c in p.conditions] == [
        "de-en:image",
        "de-en:text",
        "zh-Hans-en:image",
        "zh-Hans-en:text",
    ]
    assert [(s.condition, s.start, s.stop) for s in p.shards][:3] == [(0, 0, 2), (0, 2, 4), (1, 0, 2)]
    assert len(p.samples["de-en"]) == 4
    with pytest.raises(ValueError, match="no samples to profile in split 'train'"):
        plan([], ProfileConfig())
    with pytest.raises(ValueError, match="taylor importance needs a loss"):
        ProfileConfig(teacher_forcing=False)


def test_statistics_do_not_depend_on_batching(loaded: LoadedModel, tmp_path: Path) -> None:
    a = _profile(loaded, tmp_path / "a.zarr", batch_size=1)
    b = _profile(loaded, tmp_path / "b.zarr", batch_size=2)
    for m in ("vision", "language"):
        ta, tb = condition_totals(a, m), condition_totals(b, m)
        assert ta.keys() == tb.keys()
        for c in ta:
            np.testing.assert_array_equal(ta[c].tokens, tb[c].tokens)
            for s in STATS:
                np.testing.assert_allclose(getattr(ta[c], s), getattr(tb[c], s), rtol=1e-3, atol=1e-5)
    lang = condition_totals(a, "language")
    image, text = lang[0], lang[1]  # de-en by image, de-en by text
    assert image.tokens[0] > 0 and text.tokens[0] == 0  # image tokens only where an image was given
    assert (image.active <= image.tokens[:, None, None]).all()
    assert image.taylor[2].sum() > 0  # response positions carry the loss
    vision = condition_totals(a, "vision")
    assert vision[1].tokens.sum() == 0 and vision[0].tokens[0] > 0  # the vision tower sees images only


def test_killed_run_resumes_to_the_same_store(
    loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _profile(loaded, tmp_path / "whole.zarr")
    calls = {"n": 0}
    real = runner._step

    def dying(*args: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "_step", dying)
    with pytest.raises(KeyboardInterrupt):
        _profile(loaded, tmp_path / "resumed.zarr")
    monkeypatch.setattr(runner, "_step", real)
    partial = zarr.open_group(str(tmp_path / "resumed.zarr"), mode="r")
    assert 0 < len(pending_shards(partial)) < len(plan(_samples(), ProfileConfig(shard_size=2)).shards)
    resumed = _profile(loaded, tmp_path / "resumed.zarr")
    assert pending_shards(resumed) == []
    for m in ("vision", "language"):
        for c, st in condition_totals(whole, m).items():
            other = condition_totals(resumed, m)[c]
            for s in ("tokens", *STATS):
                np.testing.assert_allclose(getattr(st, s), getattr(other, s), rtol=1e-6)


def test_disjoint_workers_fill_one_store(loaded: LoadedModel, tmp_path: Path) -> None:
    cfg = ProfileConfig(shard_size=2, batch_size=2)
    p = plan(_samples(), cfg)
    out = tmp_path / "shared.zarr"
    n = len(p.shards)
    for worker in range(2):
        calls: list[tuple[int, int]] = []
        run_profile(loaded.model, loaded.processor, p, cfg, out, {"fingerprint": "f"},
                    only_shards=range(worker, n, 2), progress=False,
                    on_progress=lambda d, t, calls=calls: calls.append((d, t)))  # fmt: skip
        mine = sum(p.shards[i].stop - p.shards[i].start for i in range(worker, n, 2))
        assert calls[-1] == (mine, mine) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    root = zarr.open_group(str(out), mode="r")
    assert pending_shards(root) == []
    whole = _profile(loaded, tmp_path / "whole.zarr")
    for c, st in condition_totals(whole, "language").items():
        np.testing.assert_allclose(st.sum, condition_totals(root, "language")[c].sum, rtol=1e-6)
    with pytest.raises(ValueError, match="differs in 'fingerprint'"):
        run_profile(loaded.model, loaded.processor, p, cfg, out, {"fingerprint": "other"}, progress=False)


def test_sample_means_match_the_totals_and_ignore_batching(loaded: LoadedModel, tmp_path: Path) -> None:
    one = _profile(loaded, tmp_path / "one.zarr", shard_size=1, batch_size=1, sample_means=True)
    for m in ("vision", "language"):
        grp = one[m]
        means = np.asarray(grp["sample_mean"][:], dtype=np.float64)  # (shard, 1, layer, neuron)
        for shard in range(means.shape[0]):
            tokens = grp["tokens"][shard].sum()
            if tokens == 0:  # the vision tower in a text condition saw nothing
                assert np.isnan(means[shard]).all()
                continue
            expect = grp["stats"][shard, STATS.index("sum")].sum(axis=0) / tokens  # (layer, neuron)
            np.testing.assert_allclose(means[shard, 0], expect, rtol=2e-3, atol=2e-3)
    two = _profile(loaded, tmp_path / "two.zarr", shard_size=4, batch_size=3, sample_means=True)
    for m in ("vision", "language"):
        layers = int(one[m].attrs["layers"])
        width = int(one[m].attrs["neurons"])
        everything = {layer: list(range(width)) for layer in range(layers)}
        a, b = sample_means(one, m, everything), sample_means(two, m, everything)
        assert sorted(zip(a.ids, a.modalities, strict=True)) == sorted(zip(b.ids, b.modalities, strict=True))
        assert set(a.modalities) == ({"image"} if m == "vision" else {"image", "text"})
        order = {k: i for i, k in enumerate(zip(b.ids, b.modalities, strict=True))}
        rows = [order[k] for k in zip(a.ids, a.modalities, strict=True)]
        np.testing.assert_allclose(a.means, b.means[rows], rtol=2e-3, atol=2e-3)
        assert a.languages == [next(s.src for s in _samples() if s.id == i) for i in a.ids]
    picked = sample_means(one, "language", {1: [3, 0]})
    np.testing.assert_array_equal(
        picked.means[:, 0], np.asarray(one["language"]["sample_mean"][:, 0, 1, 3], dtype=np.float32)
    )
    with pytest.raises(ValueError, match="layer 99 out of range"):
        sample_means(one, "language", {99: [0]})
    without = _profile(loaded, tmp_path / "without.zarr")
    with pytest.raises(ValueError, match="no per-sample means"):
        sample_means(without, "language", {0: [0]})
    with pytest.raises(ValueError, match="differs in 'sample_slots'"):
        _profile(loaded, tmp_path / "without.zarr", sample_means=True)


@pytest.mark.parametrize("family", ["qwen2.5-vl", "llava-clip"])
def test_sample_means_on_other_towers(family: str, tmp_path: Path) -> None:
    other = load_mllm(ModelConfig(name_or_path=str(save_tiny(family, tmp_path / family)), device="cpu"))
    root = _profile(other, tmp_path / "p.zarr", shard_size=4, batch_size=3, sample_means=True)
    for m in ("vision", "language"):
        sm = sample_means(root, m, {0: [0, 1, 2]})
        assert len(sm.ids) == (5 + 3 if m == "vision" else 2 * (5 + 3))
        assert np.isfinite(sm.means).all()


def test_gradient_statistic_is_each_batchs_weight_gradient_per_neuron(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    import torch

    from mnaft_core.models.adapters import neuron_sites
    from mnaft_core.profiling.stats import neuron_abs_grad

    with_grad = _profile(loaded, tmp_path / "g.zarr", gradient=True)
    without = _profile(loaded, tmp_path / "n.zarr")
    assert with_grad.attrs["gradient"] is True and "gradient" not in without.attrs
    for m in ("vision", "language"):
        tg, tn = condition_totals(with_grad, m), condition_totals(without, m)
        for c in tg:
            assert tn[c].gradient is None and tg[c].gradient is not None
            for s in STATS:  # the other statistics are the same with the gradient switched on
                np.testing.assert_allclose(getattr(tg[c], s), getattr(tn[c], s), rtol=1e-4, atol=1e-6)
    vision = condition_totals(with_grad, "vision")
    assert vision[0].gradient is not None and vision[0].gradient.sum() > 0
    assert vision[1].gradient is not None and vision[1].gradient.sum() == 0  # no image: no vision gradient
    # shard 0 (de-en by image, samples 0-1, one batch): recompute its gradient by hand
    cfg = ProfileConfig(shard_size=2, batch_size=2, gradient=True)
    the_plan = plan(_samples(), cfg)
    model = loaded.model
    sites = [s for s in neuron_sites(model) if s.module == "language"]
    weights = [[(model.get_parameter(n), ax) for n, (_k, ax) in s.parameter_slices(model).items()
                if n.endswith(".weight")] for s in sites]  # fmt: skip
    requires = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        for group in weights:
            for p, _ in group:
                p.requires_grad_(True)
        chunk = the_plan.samples["de-en"][0:2]
        runner._step(model, loaded.processor, {}, chunk, "image", cfg, torch.device("cpu"))
        expected = np.stack([neuron_abs_grad([(p.grad, ax) for p, ax in g], sites[0].width(model)).numpy()
                             for g in weights])  # fmt: skip
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
            p.grad = None
    stored = np.asarray(with_grad["language"]["gradient"][0])
    np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=1e-7)
    assert (stored > 0).any()
