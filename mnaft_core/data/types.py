"""Plain records passed between the data-stage modules, and the stage's error types."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class DataError(ValueError):
    """A data-stage problem the user must fix (bad config, missing column, unreadable file)."""


class BadInputError(DataError):
    """One bad record of a source (named by file and line); `data.skip_bad: true` skips and counts it."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where a record's image lives, read only when the record is materialised.

    ``member`` is set for an image inside a zip archive (``path``), read without extracting it;
    ``box`` (x0, y0, x1, y1) crops the image (a text line of a whole scene image); ``max_side``
    downscales a larger one.
    """

    path: str
    member: str | None = None
    box: tuple[int, int, int, int] | None = None
    max_side: int | None = None

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path


@dataclass(frozen=True, slots=True)
class TextPair:
    """One aligned text pair in its source's natural orientation.

    `image` is set only for rows of an already-rendered dataset (encoded bytes of `src_text` shown in an
    image), `image_ref` for rows of a published image dataset (the file is read when the row is
    written, so a large dataset is never held in memory); those rows keep their image instead of being
    rendered. `split` is the dataset's own split, `where` names the record (file:line) in errors, and
    `extra` holds the dataset's own fields (category, difficulty, ...) kept as columns.
    """

    src_lang: str
    tgt_lang: str
    src_text: str
    tgt_text: str
    origin: str
    image: bytes | None = None
    image_ref: ImageRef | None = None
    split: str | None = None
    where: str = ""
    extra: tuple[tuple[str, str | None], ...] = ()


@dataclass
class BadInput:
    """The policy for bad records: stop at the first (default) or skip and count them by reason."""

    skip: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)

    def __call__(self, reason: str, where: str, detail: str) -> None:
        """Report one bad record; raises BadInputError unless skipping."""
        msg = f"{where}: {detail}" if where else detail
        if not self.skip:
            raise BadInputError(f"{msg} (set data.skip_bad: true to skip such records and count them)")
        self.counts[reason] += 1
        self.first.setdefault(reason, msg)
