"""Plain records passed between the data-stage modules, and the stage's error type."""

from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """A data-stage problem the user must fix (bad config, missing column, unreadable file)."""


@dataclass(frozen=True)
class TextPair:
    """One aligned text pair in its source's natural orientation.

    `image` is set only for rows of an already-rendered dataset (encoded bytes of `src_text` shown in an
    image); those rows are carried through instead of being rendered again.
    """

    src_lang: str
    tgt_lang: str
    src_text: str
    tgt_text: str
    origin: str
    image: bytes | None = None
