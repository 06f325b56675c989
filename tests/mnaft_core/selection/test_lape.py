"""LAPE agrees exactly with a direct transcription of the published procedure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mnaft_core.selection.lape import LapeConfig, activation_probability, lape_entropy, select_lape


def reference_lape(
    over_zero: torch.Tensor, n: torch.Tensor, top_rate: float, filter_rate: float, bar_ratio: float
) -> list[set[tuple[int, int]]]:
    """Tang et al. (2024) identify.py, transcribed: per language, the (layer, neuron) pairs selected."""
    activation_probs = over_zero / n  # layer x inter x lang_num
    normed_activation_probs = activation_probs / activation_probs.sum(dim=-1, keepdim=True)
    normed_activation_probs[torch.isnan(normed_activation_probs)] = 0
    log_probs = torch.where(normed_activation_probs > 0, normed_activation_probs.log(), 0)
    entropy = -torch.sum(normed_activation_probs * log_probs, dim=-1)
    largest = False
    flattened_probs = activation_probs.flatten()
    top_prob_value = flattened_probs.kthvalue(round(len(flattened_probs) * filter_rate)).values.item()
    top_position = (activation_probs > top_prob_value).sum(dim=-1)
    entropy[top_position == 0] = -torch.inf if largest else torch.inf
    flattened_entropy = entropy.flatten()
    top_entropy_value = round(len(flattened_entropy) * top_rate)
    _, index = flattened_entropy.topk(top_entropy_value, largest=largest)
    row_index = index // entropy.size(1)
    col_index = index % entropy.size(1)
    selected_probs = activation_probs[row_index, col_index]  # n x lang
    selected_probs = selected_probs.transpose(0, 1)
    activation_bar = flattened_probs.kthvalue(round(len(flattened_probs) * bar_ratio)).values.item()
    lang, indice = torch.where(selected_probs > activation_bar)
    merged = torch.stack((row_index, col_index), dim=-1)
    out: list[set[tuple[int, int]]] = [set() for _ in range(n.numel())]
    for k, i in zip(lang.tolist(), indice.tolist(), strict=True):
        r, c = merged[i].tolist()
        out[k].add((r, c))
    return out


@st.composite
def counts(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    layers = draw(st.integers(1, 4))
    neurons = draw(st.integers(8, 40))
    langs = draw(st.integers(2, 5))
    tokens = np.array(draw(st.lists(st.integers(50, 500), min_size=langs, max_size=langs)), dtype=np.int64)
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    base = rng.beta(0.5, 2.0, size=(layers, neurons, 1))
    skew = rng.gamma(0.3, 1.0, size=(layers, neurons, langs))
    p = np.clip(base * skew / skew.mean(axis=-1, keepdims=True), 0, 1)
    p[rng.random((layers, neurons)) < 0.1] = 0.0  # dead neurons
    active = np.minimum(rng.binomial(tokens, p), tokens)
    return active.astype(np.int64), tokens


@settings(max_examples=60, deadline=None)
@given(counts(), st.sampled_from([0.05, 0.1, 0.2]), st.sampled_from([0.8, 0.9, 0.95]))
def test_matches_published_formulas(
    data: tuple[np.ndarray, np.ndarray], top_rate: float, rate: float
) -> None:
    active, tokens = data
    prob = activation_probability(active, tokens)
    cfg = LapeConfig(top_rate=top_rate, filter_rate=rate, activation_bar_ratio=rate)
    res = select_lape(prob, cfg)
    # ties at the selection boundary make topk's choice arbitrary: only compare where it is defined
    ent = np.where((prob > res.filter_bar).any(-1), lape_entropy(prob), np.inf).ravel()
    k = round(ent.size * top_rate)
    srt = np.sort(ent)
    assume(k == 0 or k >= ent.size or srt[k - 1] != srt[k])
    over_zero = torch.tensor(active, dtype=torch.float64)
    ref = reference_lape(over_zero, torch.tensor(tokens, dtype=torch.float64), top_rate, rate, rate)
    mine = [set(map(tuple, np.argwhere(res.languages[..., j]).tolist())) for j in range(len(tokens))]
    # agnostic neurons (above the bar everywhere) leave the specific lists by MNAFT's rule
    agn = set(map(tuple, np.argwhere(res.agnostic).tolist()))
    assert mine == [r - agn for r in ref]
    assert res.activation_bar == pytest.approx(
        torch.tensor(prob).flatten().kthvalue(round(prob.size * rate)).values.item()
    )


def test_entropy_values_and_dead_neurons() -> None:
    prob = np.array([[[0.5, 0.5], [0.9, 0.0], [0.0, 0.0]]])
    ent = lape_entropy(prob)
    assert ent[0, 0] == pytest.approx(np.log(2))
    assert ent[0, 1] == 0.0
    assert ent[0, 2] == np.inf


def test_classes_on_constructed_case() -> None:
    # layer 0: neuron 0 German-only, neuron 1 fires everywhere, the rest quiet
    prob = np.full((1, 100, 3), 0.01)
    prob[0, 0] = [0.0, 0.9, 0.0]
    prob[0, 1] = [0.9, 0.9, 0.9]
    res = select_lape(prob, LapeConfig(top_rate=0.02, filter_rate=0.95, activation_bar_ratio=0.95))
    assert res.specific[0, 0] and res.languages[0, 0].tolist() == [False, True, False]
    assert res.agnostic[0, 1] and not res.specific[0, 1]
    assert res.specific.sum() == 1 and res.agnostic.sum() == 1


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="have no tokens"):
        activation_probability(np.zeros((1, 2, 2), np.int64), np.array([5, 0]))
    with pytest.raises(ValueError, match=r"\[0, tokens\]"):
        activation_probability(np.full((1, 2, 2), 9, np.int64), np.array([5, 5]))
    with pytest.raises(ValueError, match="languages>=2"):
        select_lape(np.zeros((1, 4, 1)))
