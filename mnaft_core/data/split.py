"""Train/val/test split by a salted hash of the source text.

Hashing the text itself (not the pair, not the direction) puts every use of a source string, and so
every image of it, in one split: "Open" rendered for en->de and for en->zh cannot straddle train and
test. Caps keep a deterministic, hash-ordered sample per direction and split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from mnaft_core.data.clean import hash_key
from mnaft_core.data.config import SplitConfig

SPLITS = ("train", "val", "test")
T = TypeVar("T")


def unit_hash(salt: str, text: str) -> float:
    """A uniform number in [0, 1) from the salted sha256 of the normalised text."""
    digest = hashlib.sha256(f"{salt}\x00{hash_key(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(text: str, cfg: SplitConfig) -> str:
    """The split a source text belongs to, whatever direction it is used in."""
    u = unit_hash(cfg.salt, text)
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.val_fraction:
        return "val"
    return "train"


def cap_of(split: str, cfg: SplitConfig) -> int:
    """How many pairs of one direction a split keeps."""
    return cfg.max_train_per_direction if split == "train" else cfg.max_eval_per_direction


def hash_order(items: Iterable[T], key: str, salt: str, text_of: Callable[[T], str]) -> list[T]:
    """Items sorted by a salted hash: a deterministic shuffle independent of input order."""
    return sorted(items, key=lambda it: (unit_hash(f"{salt}/{key}", text_of(it)), text_of(it)))
