"""The claim's statistics: chrF++ from sufficient statistics, Holm, MDD, the two-level paired bootstrap,
the decision rule, the learning-rate choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mnaft_core.evaluation.claim import (
    Bootstrap,
    Comparison,
    choose_rates,
    chrf_from_statistics,
    chrf_statistics,
    claim_statistics,
    decide,
    holm,
    mdd_factor,
    measures,
)
from mnaft_core.evaluation.metrics import corpus_scores

REFS = ["Datei öffnen", "Speichern", "Fenster schließen", "Hilfe", "Neuer Ordner", "Drucken", "Abbrechen",
        "Suchen", "Einstellungen", "Beenden"]  # fmt: skip
GOOD = ["Datei öffnen", "Speichern", "Fenster schliessen", "Hilfe", "Neuer Ordner", "Drucken", "Abbruch",
        "Suche", "Einstellung", "Beenden"]  # fmt: skip
BAD = ["Datei", "Speicher", "Fenster", "Hilf", "Ordner", "Druck", "Ab", "Su", "Ein", "Ende"]


def test_chrf_from_summed_statistics_is_sacrebleus_corpus_chrf() -> None:
    for hyps in (GOOD, BAD, [""] * len(REFS), GOOD[:5] + BAD[5:]):
        stats = chrf_statistics(hyps, REFS)
        assert stats.shape == (len(REFS), 24)  # 6 character + 2 word orders x (hyp, ref, match)
        want = corpus_scores(hyps, REFS, "de")["chrf"].score
        assert float(chrf_from_statistics(stats.sum(0))) == pytest.approx(want, abs=1e-9)
    batch = np.stack([chrf_statistics(GOOD, REFS).sum(0), chrf_statistics(BAD, REFS).sum(0)])
    assert chrf_from_statistics(batch).shape == (2,)


def test_holm_on_known_p_values() -> None:
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([0.2]) == [0.2]


def test_mdd_factor_is_the_designs_3_71_for_twelve_comparisons() -> None:
    assert mdd_factor(12) == pytest.approx(2.865 + 0.842, abs=2e-3)
    assert round(mdd_factor(12), 2) == 3.71
    assert mdd_factor(1) == pytest.approx(1.960 + 0.842, abs=2e-3)


def _frame(system: str, by_seed: dict[int, list[str]], direction: str = "en-de") -> pl.DataFrame:
    rows = [
        {"system": system, "seed": seed, "direction": direction, "sample_id": f"s{i:02d}", "source": REFS[i],
         "reference": REFS[i], "tgt_lang": "de", "hypothesis": h}
        for seed, hyps in by_seed.items()
        for i, h in enumerate(hyps)
    ]  # fmt: skip
    return pl.DataFrame(rows)


def _values(boot: Bootstrap, df: pl.DataFrame, seeded: bool = True) -> tuple[float, np.ndarray]:
    ids = {"en-de": [f"s{i:02d}" for i in range(len(REFS))]}
    m = measures(df, "hypothesis", "chrf", ["en-de"], ids, "x")
    est, values, _ = boot.chrf(m, "x", seeded)
    return est, values


def test_two_level_bootstrap_pairs_seeds_and_strings() -> None:
    boot = Bootstrap([0, 1], [len(REFS)], 2000, seed=7)
    a_est, a = _values(boot, _frame("a", {0: GOOD, 1: BAD}))
    _, same = _values(boot, _frame("b", {0: GOOD, 1: BAD}))
    np.testing.assert_array_equal(a - same, 0.0)  # seed k of A with seed k of B, same strings: no spread
    swapped_est, swapped = _values(boot, _frame("c", {0: BAD, 1: GOOD}))
    assert swapped_est == pytest.approx(a_est)  # same mean over seeds ...
    assert np.abs(a - swapped).max() > 1.0  # ... but the seed draws pair 0 with 0: resamples differ
    # B = A but for one string: the paired delta varies far less than A's own score
    one_off = {s: list(h) for s, h in {0: GOOD, 1: BAD}.items()}
    one_off[0][3] = "Hilfen"
    _, close = _values(boot, _frame("d", one_off))
    assert (a - close).std() < 0.2 * a.std()
    # a system without seeds is one output for every seed
    base_est, base = _values(boot, _frame("base", {0: GOOD}), seeded=False)
    assert base_est == pytest.approx(corpus_scores(GOOD, REFS, "de")["chrf"].score)
    _, both_good = _values(boot, _frame("f", {0: GOOD, 1: GOOD}))
    np.testing.assert_allclose(base - both_good, 0.0, atol=1e-9)
    with pytest.raises(ValueError, match="seeds \\[0\\], the experiment's are \\[0, 1\\]"):
        _values(boot, _frame("e", {0: GOOD}))
    again = Bootstrap([0, 1], [len(REFS)], 2000, seed=7)
    np.testing.assert_array_equal(_values(again, _frame("a", {0: GOOD, 1: BAD}))[1], a)


def _c(system: str, delta: float, low: float, high: float, p_holm: float) -> Comparison:
    return Comparison(system, delta, low, high, (high - low) / 3.92, p_holm, p_holm, 1.0)


RET_OK = {"text_chrf_delta_high": 0.5, "reading_cer_delta_low": -0.01}


def test_decision_rule_cases() -> None:
    win = [_c("random", 3.0, 1.5, 4.5, 0.001), _c("full", 2.0, 1.2, 2.8, 0.01)]
    assert decide(win, ["random", "full"], RET_OK)["outcome"] == "supported"
    costly = decide(win, ["random", "full"], {"text_chrf_delta_high": -2.5, "reading_cer_delta_low": 0.0})
    assert costly["outcome"] == "supported at a retention cost" and costly["retention_cost"]
    cer_cost = decide(win, ["random", "full"], {"text_chrf_delta_high": 0.0, "reading_cer_delta_low": 0.03})
    assert cer_cost["outcome"] == "supported at a retention cost"
    one_win = [_c("random", 3.0, 1.5, 4.5, 0.001), _c("full", 0.5, -0.5, 1.5, 0.3)]
    assert decide(one_win, ["random", "full"], RET_OK)["outcome"] == "inconclusive"
    loss = [_c("random", 3.0, 1.5, 4.5, 0.001), _c("full", -2.0, -3.0, -1.0, 0.01)]
    assert decide(loss, ["random", "full"], RET_OK)["outcome"] == "contradicted"
    small = [_c("random", 0.1, -0.5, 0.7, 0.6), _c("full", 0.0, -0.6, 0.6, 0.9)]
    res = decide(small, ["random", "full"], RET_OK)
    assert res["outcome"] == "contradicted" and "below +1.0" in res["reasons"][0]
    tiny_wins = [_c("random", 0.5, 0.3, 0.7, 0.001), _c("full", 0.4, 0.2, 0.6, 0.001)]
    assert decide(tiny_wins, ["random", "full"], RET_OK)["outcome"] == "supported and contradicted"
    with pytest.raises(ValueError, match="needs the comparisons with \\['full'\\]"):
        decide(win[:1], ["random", "full"], RET_OK)


def test_learning_rate_choice_takes_the_best_and_ties_go_to_the_lower_rate() -> None:
    grid = [
        {"system": "mnaft", "lr": 2e-3, "chrf": 30.0},
        {"system": "mnaft", "lr": 5e-4, "chrf": 30.0},
        {"system": "mnaft", "lr": 1e-3, "chrf": 29.0},
        {"system": "full", "lr": 1e-4, "chrf": 20.0},
        {"system": "full", "lr": 3e-4, "chrf": 21.0},
    ]
    assert choose_rates(grid) == {"mnaft": 5e-4, "full": 3e-4}


def test_claim_statistics_compares_the_baseline_with_every_system_in_one_holm_family() -> None:
    frames = [_frame("mnaft", {0: GOOD, 1: GOOD}), _frame("random", {0: BAD, 1: GOOD}),
              _frame("full", {0: BAD, 1: BAD}), _frame("base", {0: BAD})]  # fmt: skip
    outputs = pl.concat(frames)
    retained = pl.concat([f.with_columns(pl.col("hypothesis").alias("text_hypothesis"),
                                         pl.col("hypothesis").alias("reading")) for f in frames])  # fmt: skip
    res = claim_statistics(outputs, retained, ["base", "mnaft", "random", "full"], "mnaft", [0, 1],
                           ["random", "full"], 500, 1, seedless=["base"])  # fmt: skip
    good, bad = (corpus_scores(h, REFS, "de")["chrf"].score for h in (GOOD, BAD))
    by = {c.system: c for c in res.comparisons}
    assert set(by) == {"base", "random", "full"}
    assert by["full"].delta == pytest.approx(good - bad)
    assert by["random"].delta == pytest.approx((good - bad) / 2)
    assert by["full"].p_holm >= by["full"].p and by["full"].mdd == pytest.approx(
        mdd_factor(3) * by["full"].se
    )
    assert by["full"].ci_low <= by["full"].delta <= by["full"].ci_high
    ret = {r["system"]: r for r in res.retention}
    assert ret["base"]["text_chrf"] == pytest.approx(bad) and "text_chrf_delta" not in ret["base"]
    assert ret["mnaft"]["text_chrf_delta"] == pytest.approx(good - bad)
    assert ret["mnaft"]["reading_cer_delta"] < 0  # reads the GOOD strings: fewer edits than the base
    assert res.decision["outcome"] in {"supported", "inconclusive", "contradicted"}
    assert res.to_json()["comparisons"][0]["significant"] in (True, False)


def test_report_shows_preconditions_decision_and_every_table(tmp_path: Path) -> None:
    from mnaft_core.evaluation.claim_report import write_claim_report

    frames = [
        _frame("mnaft", {0: GOOD, 1: GOOD}),
        _frame("random", {0: BAD, 1: GOOD}),
        _frame("base", {0: BAD}),
    ]
    outputs = pl.concat(frames)
    retained = pl.concat([f.with_columns(pl.col("hypothesis").alias("text_hypothesis"),
                                         pl.col("hypothesis").alias("reading")) for f in frames])  # fmt: skip
    res = claim_statistics(
        outputs, retained, ["base", "mnaft", "random"], "mnaft", [0, 1], ["random"], 300, 2
    )
    context = {
        "name": "t", "preregistered": True, "model": "m", "steps": 20, "grid_seed": 0,
        "kinds": {"base": "base", "mnaft": "mnaft", "random": "mnaft"}, "chosen_lr": {"mnaft": 1e-3},
        "grid": [{"system": "mnaft", "lr": 1e-3, "chrf": 1.0}, {"system": "mnaft", "lr": 2e-3, "chrf": 0.5}],
        "trainable_params": {"mnaft": 10}, "masks": {},
        "preconditions": {"base_text_chrf": 60.0, "base_image_chrf": 30.0, "modality_gap": 30.0,
                          "specificity_share": 0.1, "specificity_selected": 10, "specificity_significant": 1},
    }  # fmt: skip
    report = write_claim_report(tmp_path, res, context)
    md = (tmp_path / "claim.md").read_text()
    assert json.loads((tmp_path / "claim.json").read_text()) == report
    assert "Not the pre-registered" not in md and "30.00 (the design asks for at least 20)" in md
    assert "1 of 10 (10.0%). Below 50%: `mnaft` vs `random` is expected to show nothing." in md
    assert md.index("## Preconditions") < md.index("## Decision") < md.index("## mnaft against each system")
    assert (
        "| random | +" in md
        and "Per direction (mean over seeds):" in md
        and "| mnaft | 0.001 | 1.00 | yes |" in md
    )
