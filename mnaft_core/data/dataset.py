"""Reading the dataset artifact back: the rows a later stage trains, profiles or evaluates on."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from mnaft_core.data.build import DATASET_FILE
from mnaft_core.data.split import SPLITS
from mnaft_core.data.types import DataError

_COLUMNS = ["id", "split", "direction", "src_lang", "tgt_lang", "script", "src_text", "tgt_text", "image"]


@dataclass(frozen=True)
class Sample:
    """One image-translation example: the text shown in ``image`` (encoded bytes) and its translation."""

    id: str
    src: str
    tgt: str
    src_text: str
    tgt_text: str
    image: bytes
    script: str = ""

    @property
    def direction(self) -> str:
        return f"{self.src}-{self.tgt}"

    def pil(self) -> Image.Image:
        return Image.open(io.BytesIO(self.image)).convert("RGB")


def load_samples(
    dataset_dir: str | Path, split: str, directions: Sequence[str] | None = None, limit: int | None = None
) -> list[Sample]:
    """Rows of ``split`` in file order (hash order), at most ``limit`` per direction."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    path = Path(dataset_dir) / DATASET_FILE
    if not path.is_file():
        raise DataError(f"{path}: no dataset file (is this a data artifact?)")
    out: list[Sample] = []
    per_direction: dict[str, int] = {}
    batches = pq.ParquetFile(path).iter_batches(batch_size=256, columns=_COLUMNS)
    rows = (r for b in batches for r in b.to_pylist())
    for r in rows:  # streamed: only the rows kept stay in memory
        if r["split"] != split:
            continue
        s = Sample(
            r["id"], r["src_lang"], r["tgt_lang"], r["src_text"], r["tgt_text"], r["image"], r["script"]
        )
        if directions is not None and s.direction not in directions:
            continue
        n = per_direction.get(s.direction, 0)
        if limit is not None and n >= limit:
            continue
        per_direction[s.direction] = n + 1
        out.append(s)
    if not out:
        raise DataError(
            f"{path}: split {split!r} has no rows" + (f" for {list(directions)}" if directions else "")
        )
    return out
