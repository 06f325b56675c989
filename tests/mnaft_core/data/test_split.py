"""The leakage rule: a source text lands in exactly one split, whatever pair or direction uses it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mnaft_core.data.clean import hash_key
from mnaft_core.data.config import SplitConfig
from mnaft_core.data.split import hash_order, split_of

CFG = SplitConfig(val_fraction=0.2, test_fraction=0.2)
texts = st.text(min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["en-de", "en-zh", "en-ja"]), texts, texts), max_size=40))
def test_no_source_text_in_two_splits(rows: list[tuple[str, str, str]]) -> None:
    seen: dict[str, str] = {}
    for _direction, src, _tgt in rows:
        for variant in (src, src.upper(), f"  {src} "):  # the same text, differently cased or spaced
            split = split_of(variant, CFG)
            assert seen.setdefault(hash_key(variant), split) == split


def test_split_fractions_and_salt() -> None:
    words = [f"word {i}" for i in range(4000)]
    splits = [split_of(w, CFG) for w in words]
    assert 0.15 < splits.count("test") / len(words) < 0.25 and 0.15 < splits.count("val") / len(words) < 0.25
    other = [split_of(w, CFG.model_copy(update={"salt": "other"})) for w in words]
    assert splits != other


def test_hash_order_is_input_order_independent() -> None:
    words = [f"w{i}" for i in range(50)]
    a = hash_order(words, "en-de", "s", lambda w: w)
    assert a == hash_order(list(reversed(words)), "en-de", "s", lambda w: w)
    assert a != sorted(words)
