from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mnaft_core.selection.select import SelectConfig, select_neurons
from mnaft_core.viz.neurons import (
    neuron_embedding,
    pca_2d,
    probability_distribution,
    sample_embedding,
    specific_heatmaps,
)
from tests.mnaft_core.selection.test_select import SITES, _stats


def test_pictures_are_written(tmp_path: Path) -> None:
    res = select_neurons({"language": _stats()}, SITES, SelectConfig(), "f" * 64)
    paths = [
        specific_heatmaps(res.layers, tmp_path / "heat.png"),
        probability_distribution(res.neurons, tmp_path / "prob.png"),
        neuron_embedding(res.neurons, tmp_path / "neurons.png"),
    ]
    rng = np.random.default_rng(0)
    classes = res.neurons.filter(res.neurons["layer"] == 2)["class"].to_numpy()
    paths.append(
        sample_embedding(rng.random((30, 200)), ["de"] * 15 + ["en"] * 15, classes, tmp_path / "s.png")
    )
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width > 300
            lo, hi = im.convert("L").getextrema()
            assert hi - lo > 100, f"{p.name} looks blank"


def test_pca_separates_two_clusters() -> None:
    x = np.vstack([np.zeros((10, 5)), np.ones((10, 5))]) + np.random.default_rng(0).normal(0, 0.01, (20, 5))
    xy = pca_2d(x)
    assert xy.shape == (20, 2)
    assert abs(xy[:10, 0].mean() - xy[10:, 0].mean()) > 1.0
