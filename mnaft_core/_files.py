"""Byte-stable file writing: equal content must give equal bytes, so equal artifacts get equal sha256s."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def sort_safetensors_metadata(path: Path) -> None:
    """Rewrite a safetensors header in place with its ``__metadata__`` keys sorted.

    safetensors serialises the metadata from a hash map, whose order changes from process to process:
    the same tensors and metadata saved by a resumed run and an uninterrupted one differed in bytes.
    The header keeps its length (spaces pad it, as safetensors itself does), so no data moves.
    """
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        meta = header.pop("__metadata__", None)
        if not meta:
            return
        ordered = {"__metadata__": dict(sorted(meta.items())), **header}
        raw = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
        if len(raw) > n:  # cannot happen for a reordering of the same JSON; never corrupt the file
            raise ValueError(f"{path}: sorted safetensors header is longer than the original")
        f.seek(8)
        f.write(raw + b" " * (n - len(raw)))
