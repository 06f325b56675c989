"""Translation and reading metrics: sacrebleu BLEU / chrF++ / TER with signatures, CER / WER.

BLEU tokenisation follows the target language (``zh`` for Chinese, ``ja-mecab`` for Japanese,
``ko-mecab`` for Korean, ``13a`` otherwise). A tokenizer whose dependency is missing is an error that says
what to install, never a silent fallback to another tokenizer (scores would not be comparable).
Empty hypotheses are scored as empty strings, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric


class MetricDependencyError(RuntimeError):
    """A metric needs a package that is not installed."""


_TOKENIZER_EXTRA = {"ja-mecab": "sacrebleu[ja]", "ko-mecab": "sacrebleu[ko]"}


def bleu_tokenizer(lang: str) -> str:
    """sacrebleu tokenizer for a BCP-47 target language."""
    base = lang.split("-")[0].lower()
    return {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}.get(base, "13a")


def make_bleu(lang: str) -> BLEU:
    tok = bleu_tokenizer(lang)
    try:
        metric = BLEU(tokenize=tok)
        metric.corpus_score(["a"], [["a"]])  # the tokenizer loads its dependency lazily
    except (SystemExit, ImportError, RuntimeError) as err:  # sacrebleu calls sys.exit() on missing extras
        raise MetricDependencyError(
            f"BLEU for target language {lang!r} needs tokenizer {tok!r}, whose dependency is missing: "
            f"pip install '{_TOKENIZER_EXTRA.get(tok, 'sacrebleu')}'"
        ) from err
    return metric


def make_chrf() -> CHRF:
    return CHRF(word_order=2)  # chrF++


def make_ter() -> TER:
    return TER(asian_support=True)


def metrics_for(lang: str) -> dict[str, Metric]:
    return {"bleu": make_bleu(lang), "chrf": make_chrf(), "ter": make_ter()}


@dataclass(frozen=True)
class CorpusScore:
    score: float
    signature: str


def corpus_scores(hyps: Sequence[str], refs: Sequence[str], lang: str) -> dict[str, CorpusScore]:
    """BLEU, chrF++ and TER of one system on one direction (one reference per segment)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if not refs:
        raise ValueError("no segments to score")
    hyps = [h if h is not None else "" for h in hyps]
    out = {}
    for name, metric in metrics_for(lang).items():
        res = metric.corpus_score(list(hyps), [list(refs)])
        out[name] = CorpusScore(float(res.score), str(metric.get_signature()))
    return out


def _chars(s: str) -> list[str]:
    return list(s.strip())


def error_rate(hyps: Sequence[str], refs: Sequence[str], unit: str = "char") -> float:
    """Corpus CER (``unit='char'``) or WER (``'word'``): total edits over total reference length."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    split = _chars if unit == "char" else str.split
    edits = total = 0
    for h, r in zip(hyps, refs, strict=True):
        rt = split(r)
        edits += Levenshtein.distance(split(h or ""), rt)
        total += len(rt)
    if total == 0:
        raise ValueError("references are empty: error rate undefined")
    return edits / total
