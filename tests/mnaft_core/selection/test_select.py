from __future__ import annotations

import numpy as np
import pytest

from mnaft_core.profiling.stats import HostStats
from mnaft_core.profiling.zarr_stats import Condition
from mnaft_core.selection.aggregate import LanguageStats, per_language
from mnaft_core.selection.lape import LapeConfig
from mnaft_core.selection.select import METHODS, SelectConfig, select_neurons

LANGS = ("en", "de", "zh-Hans")


def test_per_language_routes_groups() -> None:
    conds = [Condition("en", "de", "image"), Condition("zh-Hans", "en", "text")]
    totals = {}
    for c in range(2):
        st = HostStats.zeros(1, 2)
        st.tokens[:] = [10 * (c + 1), 1 * (c + 1), 100 * (c + 1)]  # image, instruction, response
        st.active[:] = st.tokens[:, None, None]
        totals[c] = st
    lm = per_language("language", totals, conds, LANGS)
    # en: prompt of cond 0 (11) + response of cond 1 (200); de: response of cond 0; zh: prompt of cond 1
    assert lm.tokens.tolist() == [211.0, 100.0, 22.0]
    vis = per_language("vision", totals, conds, LANGS)
    assert vis.tokens.tolist() == [111.0, 0.0, 222.0]  # the vision side is all source language
    with pytest.raises(ValueError, match="language 'fr' is not among"):
        per_language("vision", {0: totals[0]}, [Condition("fr", "en", "image")], LANGS)


def _stats(seed: int = 0) -> LanguageStats:
    rng = np.random.default_rng(seed)
    layers, neurons, k = 4, 200, len(LANGS)
    tokens = np.array([1000.0, 1000.0, 1000.0])
    p = rng.beta(0.6, 3.0, size=(layers, neurons, 1)) * np.ones((1, 1, k))
    p[2, :6] = [0.0, 0.95, 0.0]  # German-only neurons in layer 2
    p[2, 6:9] = 0.97  # agnostic
    active = np.round(p * tokens)
    taylor = rng.random((layers, neurons, k))
    taylor[2] *= 50  # layer 2 matters most
    gradient = rng.random((layers, neurons))
    return LanguageStats(LANGS, tokens, active, active * 0.5, active * 0.4, taylor, gradient)


SITES = {"language": [f"model.language_model.layers.{i}.mlp" for i in range(4)]}


def test_mnaft_selects_the_specific_and_agnostic_neurons() -> None:
    cfg = SelectConfig(lape=LapeConfig(top_rate=0.01), layer_fraction=0.25)
    res = select_neurons({"language": _stats()}, SITES, cfg, fingerprint="f" * 64, data_key="d")
    assert list(res.mask.sites) == ["model.language_model.layers.2.mlp"]
    site = res.mask.sites["model.language_model.layers.2.mlp"]
    assert set(site.specific["de"].tolist()) >= {0, 1, 2, 3, 4, 5}
    assert set(site.agnostic.tolist()) >= {6, 7, 8}
    layers = res.layers.filter(res.layers["selected"])
    assert layers["layer"].to_list() == [2] and layers["rank"].to_list() == [1]
    row = res.neurons.filter((res.neurons["layer"] == 2) & (res.neurons["neuron"] == 0)).row(0, named=True)
    assert row["class"] == "specific" and row["languages"] == ["de"] and row["p_de"] == pytest.approx(0.95)
    assert res.neurons.height == 4 * 200


@pytest.mark.parametrize(
    "method", [m for m in METHODS if m not in ("mnaft", "layers", "agnostic", "specific")]
)
def test_baselines_spend_the_same_budget_per_layer(method: str) -> None:
    base = select_neurons({"language": _stats()}, SITES, SelectConfig(layer_fraction=0.5), "f" * 64)
    other = select_neurons(
        {"language": _stats()}, SITES, SelectConfig(method=method, layer_fraction=0.5), "f" * 64
    )
    assert set(other.mask.sites) == set(base.mask.sites)
    for path, s in base.mask.sites.items():
        assert other.mask.sites[path].neurons().size == s.neurons().size
    assert other.mask.method == method


def test_random_is_seeded_and_layers_takes_whole_layers() -> None:
    def pick(seed: int) -> list[int]:
        cfg = SelectConfig(method="random", seed=seed)
        return (
            select_neurons({"language": _stats()}, SITES, cfg, "f" * 64)
            .mask.sites[SITES["language"][2]]
            .agnostic.tolist()
        )

    assert pick(1) == pick(1) and pick(1) != pick(2)
    whole = select_neurons(
        {"language": _stats()}, SITES, SelectConfig(method="layers", layer_fraction=0.25), "f" * 64
    )
    assert whole.mask.sites[SITES["language"][2]].agnostic.size == 200
    spec = select_neurons({"language": _stats()}, SITES, SelectConfig(method="specific"), "f" * 64)
    assert all(s.agnostic.size == 0 for s in spec.mask.sites.values())


def test_gradient_takes_the_largest_weight_gradients_of_each_layer_at_mnaft_budget() -> None:
    st = _stats()
    base = select_neurons({"language": st}, SITES, SelectConfig(layer_fraction=0.5), "f" * 64)
    grad = select_neurons(
        {"language": st}, SITES, SelectConfig(method="gradient", layer_fraction=0.5), "f" * 64
    )
    assert st.gradient is not None
    for path, site in base.mask.sites.items():
        layer = SITES["language"].index(path)
        budget = site.neurons().size
        expected = np.sort(np.argsort(-st.gradient[layer], kind="stable")[:budget])
        assert grad.mask.sites[path].agnostic.tolist() == expected.tolist()
        assert not grad.mask.sites[path].specific
    no_grad = LanguageStats(st.languages, st.tokens, st.active, st.sum, st.sumsq, st.taylor)
    with pytest.raises(ValueError, match="profile with gradient: true"):
        select_neurons({"language": no_grad}, SITES, SelectConfig(method="gradient"), "f" * 64)


def test_nothing_selected_is_an_error() -> None:
    st = _stats()
    flat = LanguageStats(LANGS, st.tokens, np.zeros_like(st.active), st.sum, st.sumsq, st.taylor)
    with pytest.raises(ValueError, match="chose no neurons"):
        select_neurons({"language": flat}, SITES, SelectConfig(), "f" * 64)
