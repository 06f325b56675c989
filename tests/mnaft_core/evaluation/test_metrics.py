from __future__ import annotations

import importlib.util

import pytest

from mnaft_core.evaluation.metrics import (
    MetricDependencyError,
    bleu_tokenizer,
    corpus_scores,
    error_rate,
    make_bleu,
)
from mnaft_core.evaluation.significance import mean_std, paired_bootstrap


@pytest.mark.parametrize(
    ("lang", "tok"),
    [
        ("zh-Hans", "zh"),
        ("zh-Hant", "zh"),
        ("ja", "ja-mecab"),
        ("ko", "ko-mecab"),
        ("de", "13a"),
        ("en", "13a"),
    ],
)
def test_tokenizer_per_target_language(lang: str, tok: str) -> None:
    assert bleu_tokenizer(lang) == tok


def test_japanese_uses_mecab_and_signature_says_so() -> None:
    scores = corpus_scores(["猫が好きです"], ["猫が好きです"], "ja")
    assert scores["bleu"].score == pytest.approx(100.0)
    assert "tok:ja-mecab" in scores["bleu"].signature
    assert "nw:2" in scores["chrf"].signature  # chrF++


@pytest.mark.skipif(importlib.util.find_spec("mecab_ko") is not None, reason="Korean MeCab is installed here")
def test_missing_tokenizer_dependency_is_an_error() -> None:
    with pytest.raises(MetricDependencyError, match=r"'ko'.*ko-mecab.*pip install 'sacrebleu\[ko\]'"):
        make_bleu("ko")


def test_empty_hypotheses_are_scored_not_dropped() -> None:
    refs = ["the cat sat on the mat", "a dog barked loudly today"]
    full = corpus_scores(refs, refs, "en")
    half = corpus_scores([refs[0], ""], refs, "en")
    assert full["bleu"].score == pytest.approx(100.0)
    assert half["bleu"].score < full["bleu"].score and half["chrf"].score < 75
    with pytest.raises(ValueError, match="1 hypotheses for 2 references"):
        corpus_scores([refs[0]], refs, "en")


def test_error_rates() -> None:
    assert error_rate(["kitten"], ["sitting"]) == pytest.approx(3 / 7)
    assert error_rate(["a b c"], ["a x c d"], unit="word") == pytest.approx(2 / 4)
    assert error_rate([""], ["abc"]) == 1.0
    with pytest.raises(ValueError, match="references are empty"):
        error_rate(["x"], [""])


def test_paired_bootstrap_known_answer() -> None:
    refs = [f"sentence number {i} about the weather in town" for i in range(60)]
    perfect = list(refs)
    noisy = [r if i % 3 else "completely unrelated words here" for i, r in enumerate(refs)]
    results = paired_bootstrap(
        "mnaft", {"mnaft": perfect, "noisy": noisy, "same": list(perfect)}, refs, "en", 300
    )
    by = {(r.system, r.metric): r for r in results}
    assert by[("mnaft", "bleu")].p_value is None
    assert by[("noisy", "bleu")].p_value is not None and by[("noisy", "bleu")].p_value < 0.05
    assert by[("same", "chrf")].p_value == 1.0  # identical systems are never "significant"
    assert by[("mnaft", "bleu")].score == pytest.approx(100.0)
    assert by[("noisy", "chrf")].ci_low < by[("noisy", "chrf")].score < by[("noisy", "chrf")].ci_high
    # a small, real difference on few segments is not significant
    slight = [r if i != 5 else r.replace("weather", "wether") for i, r in enumerate(refs)]
    res = paired_bootstrap("mnaft", {"mnaft": perfect, "slight": slight}, refs, "en", 300, metrics=("chrf",))
    assert next(r.p_value for r in res if r.system == "slight") > 0.05
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([4.0]) == (4.0, 0.0)
