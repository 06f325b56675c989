"""The specificity test: planted language-specific neurons beat the slice-label null, uniform ones do
not, a pure null yields no discoveries although LAPE still selects, and the overlap counts sets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import zarr
from pydantic import ValidationError

from mnaft_core.profiling.stats import HostStats
from mnaft_core.profiling.zarr_stats import Condition, ModuleShape, create_layout, write_shard
from mnaft_core.selection.from_profile import SITE_PARAMETERS, select_from_profile, write_selection
from mnaft_core.selection.lape import LapeConfig
from mnaft_core.selection.select import SelectConfig
from mnaft_core.selection.specificity import (
    SpecificityConfig,
    benjamini_hochberg,
    jaccard,
    overlap_metrics,
    slice_counts,
    specificity_markdown,
)

DIRECTIONS = [("de", "en"), ("en", "de"), ("en", "fr"), ("fr", "en")]
CONDS = [Condition(s, t, m) for s, t in DIRECTIONS for m in ("image", "text")]
SLICES = 6  # per direction
MODULES = {
    "vision": ModuleShape(2, 40, ("v.0", "v.1")),
    "language": ModuleShape(2, 60, ("l.0", "l.1")),
}
# what a real profile records of the model's sites (select copies it onto the mask)
SITES = {
    SITE_PARAMETERS: {
        site: {f"{site}.up.weight": 0, f"{site}.down.weight": 1} for m in MODULES.values() for site in m.sites
    }
}
PLANTED = 8  # neurons 0..7 of layer 1 fire for German (source or target), hardly otherwise
TOKENS = {"image": (300.0, 40.0, 60.0), "text": (0.0, 60.0, 60.0)}  # image, instruction, response


def _profile(path: Path, planted: bool, seed: int = 0) -> zarr.Group:
    """A finished profile store; every slice has its own activation rate (samples differ), so a
    per-token null would be wrong, and the planted neurons' rate depends on the language."""
    rng = np.random.default_rng(seed)
    shard_cond = [c for c in range(len(CONDS)) for _ in range(SLICES)]
    root = create_layout(
        path, CONDS, shard_cond, MODULES, {"fingerprint": "f" * 64, "data_key": "d", **SITES}
    )
    base = {m: rng.uniform(0.1, 0.5, (s.layers, s.neurons)) for m, s in MODULES.items()}
    for shard, c in enumerate(shard_cond):
        cond = CONDS[c]
        stats = {}
        for module, shape in MODULES.items():
            st = HostStats.zeros(shape.layers, shape.neurons)
            tokens = TOKENS[cond.modality] if module == "language" else (TOKENS[cond.modality][0], 0.0, 0.0)
            st.tokens[:] = tokens
            jitter = rng.normal(0.0, 0.04, (shape.layers, shape.neurons))  # this slice's samples
            for g, n_tok in enumerate(tokens):
                lang = cond.tgt if (module == "language" and g == 2) else cond.src
                p = np.clip(base[module] + jitter, 0.01, 0.99)
                if planted:
                    p[1, :PLANTED] = 0.9 if lang == "de" else 0.05
                st.active[g] = rng.binomial(int(n_tok), p)
            st.taylor[:] = 1.0
            stats[module] = st
        write_shard(root, shard, stats)
    return root


def _cfg(**spec: float) -> SelectConfig:
    return SelectConfig(
        lape=LapeConfig(top_rate=0.1),
        layer_fraction=1.0,
        specificity=SpecificityConfig(permutations=999, **spec),
    )


def test_planted_neurons_beat_the_null_and_uniform_ones_do_not(tmp_path: Path) -> None:
    root = _profile(tmp_path / "p.zarr", planted=True)
    res = select_from_profile(root, _cfg())
    assert res.specificity is not None
    table = res.specificity.table
    planted = (table["layer"] == 1) & (table["neuron"] < PLANTED)
    assert table.filter(planted)["significant"].all()
    assert table.filter(planted)["selected"].all()  # LAPE found them too
    uniform_sel = table.filter(~planted & table["selected"])
    assert uniform_sel.height > 0  # LAPE filled its quota with the lowest-entropy uniform neurons...
    assert not uniform_sel["significant"].any()  # ...and the test says they are not specific
    assert int(table.filter(~planted)["significant"].sum()) <= 1  # FDR 5% of ~16 discoveries
    m = res.specificity.metrics
    assert m["modules"]["language"]["slices"] == len(DIRECTIONS) * SLICES
    assert m["modules"]["language"]["per_language"]["de"]["significant"] == PLANTED
    assert m["significant"] == 2 * PLANTED and m["max_entropy"] == pytest.approx(math.log(3))
    assert m["share_significant"] == pytest.approx(2 * PLANTED / m["selected"])

    out = tmp_path / "sel"
    summary = write_selection(res, out, root)
    for name in ("specificity.parquet", "overlap.parquet", "specificity.png", "modality_overlap.png"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "summary.json").read_text())["specificity"]["significant"] == 2 * PLANTED
    md = specificity_markdown(summary["specificity"], summary["overlap"])
    assert "| language |" in md and "Too little resolution" not in md
    # planted in both modalities: the image- and text-instruction specific sets share them
    lm = summary["overlap"]["language"]["specific"]
    assert lm["both"] >= PLANTED and lm["jaccard"] > 10 * lm["chance_jaccard"]
    assert "vision" not in summary["overlap"]  # the vision tower never sees a text instruction


def test_pure_null_has_no_discoveries_though_lape_selects(tmp_path: Path) -> None:
    root = _profile(tmp_path / "p.zarr", planted=False, seed=1)
    spec = select_from_profile(root, _cfg()).specificity
    assert spec is not None
    table = spec.table
    assert table["selected"].sum() >= 10  # LAPE always finds "language-specific" neurons
    assert spec.metrics["discoveries"] == 0
    # p-values of the whole family stay close to uniform
    p = table.filter(table["fires"])["p_value"].to_numpy()
    assert (p <= 0.05).mean() < 0.12


def test_benjamini_hochberg_matches_the_step_up_rule() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    q = benjamini_hochberg(p)
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 -> 0.025, 0.025, 0.05, 0.05, 0.5
    assert q.tolist() == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.5])
    assert ((q <= 0.05) == np.array([True, True, True, True, False])).all()
    rng = np.random.default_rng(0)
    null_runs = [(benjamini_hochberg(rng.random(200)) <= 0.05).any() for _ in range(400)]
    assert np.mean(null_runs) < 0.08  # under the global null FDR = FWER <= 0.05
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.2, 1.5]))


def test_overlap_on_known_sets() -> None:
    a = np.zeros(10, dtype=bool)
    b = np.zeros(10, dtype=bool)
    a[[0, 1, 2, 3]] = True
    b[[2, 3, 4]] = True
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert math.isnan(jaccard(np.zeros(3, bool), np.zeros(3, bool)))
    import polars as pl

    rows = pl.DataFrame(
        {"module": ["language"] * 2, "layer": [0, 1], "class": ["specific"] * 2, "neurons": [10, 10],
         "image": [4, 2], "text": [3, 2], "both": [2, 0], "jaccard": [0.4, 0.0], "chance_jaccard": [0.0, 0.0]}
    )  # fmt: skip
    got = overlap_metrics(rows)["language"]["specific"]
    assert (got["image"], got["text"], got["both"]) == (6, 5, 2)
    assert got["jaccard"] == pytest.approx(2 / 9)
    exp = 4 * 3 / 10 + 2 * 2 / 10  # independent random sets of these sizes, per layer
    assert got["chance_jaccard"] == pytest.approx(exp / (11 - exp))


def test_one_slice_per_direction_is_flagged_and_configs_are_checked(tmp_path: Path) -> None:
    shard_cond = list(range(len(CONDS)))  # one shard per condition: 4 slices
    root = create_layout(tmp_path / "p.zarr", CONDS, shard_cond, MODULES, {"fingerprint": "f" * 64, **SITES})
    for shard in shard_cond:
        st = {m: HostStats.zeros(s.layers, s.neurons) for m, s in MODULES.items()}
        for h in st.values():
            h.tokens[:] = 10.0
            h.active[:] = np.random.default_rng(shard).integers(0, 10, h.active.shape)
        write_shard(root, shard, st)
    counts = slice_counts(root, "language")
    assert counts.labels.tolist() == [0, 1, 2, 3]  # image and text shards of a direction: one slice
    spec = select_from_profile(root, _cfg()).specificity
    assert spec is not None
    assert spec.metrics["modules"]["language"]["min_p"] == pytest.approx(1 / 24)  # 4! labellings
    assert spec.metrics["modules"]["vision"]["min_p"] == pytest.approx(1 / 12)  # sources de, en, en, fr
    assert "Too little resolution" in specificity_markdown(spec.metrics, None)
    with pytest.raises(ValidationError, match="permutations"):
        SpecificityConfig(permutations=10)
    with pytest.raises(ValidationError, match="fdr"):
        SelectConfig.model_validate({"specificity": {"fdr": 1.5}})


def test_unfinished_profile_is_refused(tmp_path: Path) -> None:
    root = create_layout(tmp_path / "p.zarr", CONDS, [0, 1], MODULES, {"fingerprint": "f" * 64, **SITES})
    with pytest.raises(ValueError, match="unfinished shards"):
        slice_counts(root, "language")
