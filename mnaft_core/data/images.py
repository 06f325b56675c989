"""Images of published datasets: read from a folder or from inside a zip archive, checked, kept as is.

An image is stored with its own bytes (JPEG stays JPEG): decoding and re-encoding would cost time and
quality for nothing. Only a crop (a text line's box) or a downscale (`max_side`) makes a new PNG.
Archives are read in place with `zipfile`, never extracted; a few stay open for the next records.
"""

from __future__ import annotations

import io
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mnaft_core.data.types import DataError, ImageRef
from mnaft_core.images import DEFAULT_MAX_PIXELS


class CorruptImageError(DataError):
    """Bytes that do not decode as an image (or a box outside it)."""


@dataclass(frozen=True)
class CarriedImage:
    """The bytes to store (original, or a new PNG after a crop or downscale) and their pixel size."""

    data: bytes
    width: int
    height: int


class ImageReader:
    """Reads `ImageRef`s; keeps the last two zip archives open (opening one reads its whole index,
    ~0.6 KB a member: published datasets keep one archive per language, read one after another)."""

    def __init__(self, max_open: int = 2) -> None:
        self._zips: OrderedDict[str, zipfile.ZipFile] = OrderedDict()
        self._max_open = max_open

    def _zip(self, path: str) -> zipfile.ZipFile:
        zf = self._zips.pop(path, None)
        if zf is None:
            try:
                zf = zipfile.ZipFile(path)
            except zipfile.BadZipFile as e:
                raise OSError(f"{path}: not a readable zip archive ({e})") from e
            if len(self._zips) >= self._max_open:
                self._zips.popitem(last=False)[1].close()
        self._zips[path] = zf
        return zf

    def exists(self, ref: ImageRef) -> bool:
        """Whether the image is there (an archive member is looked up in the archive's index)."""
        if ref.member is None:
            return Path(ref.path).is_file()
        try:
            self._zip(ref.path).getinfo(ref.member)
        except (KeyError, OSError):
            return False
        return True

    def has_prefix(self, path: str, prefix: str) -> bool:
        """Whether the archive's members sit under ``prefix`` (judged by its first entries)."""
        return any(n.startswith(prefix) for n in self._zip(path).namelist()[:100])

    def read(self, ref: ImageRef) -> bytes:
        """The image's encoded bytes; OSError (FileNotFoundError if missing) when it cannot be read."""
        if ref.member is None:
            return Path(ref.path).read_bytes()
        try:
            return self._zip(ref.path).read(ref.member)
        except KeyError as e:
            raise FileNotFoundError(f"{ref.path}: no member {ref.member!r}") from e
        except (zipfile.BadZipFile, RuntimeError, EOFError) as e:  # bad CRC, encrypted member
            raise OSError(f"{ref}: cannot read ({e})") from e

    def close(self) -> None:
        while self._zips:
            self._zips.popitem()[1].close()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def carry_image(
    data: bytes,
    box: tuple[int, int, int, int] | None = None,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> CarriedImage:
    """Check that ``data`` decodes completely; crop to ``box`` and shrink to ``max_side`` if asked.

    Raises CorruptImageError for bytes that are not a whole image, an image over ``max_pixels`` (checked
    from the header, before decoding), or a box that misses it.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise CorruptImageError(
                    f"{im.width}x{im.height} = {im.width * im.height:,} pixels, over data.max_pixels "
                    f"({max_pixels:,}); not decoded"
                )
            im.load()  # decodes every byte: a truncated file fails here, not later in training
            if box is None and (max_side is None or max(im.size) <= max_side):
                return CarriedImage(data, im.width, im.height)
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise CorruptImageError(f"corrupt image ({e})") from e
    if box is not None:
        x0, y0 = max(0, min(box[0], box[2])), max(0, min(box[1], box[3]))
        x1, y1 = min(rgb.width, max(box[0], box[2])), min(rgb.height, max(box[1], box[3]))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise CorruptImageError(f"box {list(box)} lies outside the {rgb.width}x{rgb.height} image")
        rgb = rgb.crop((x0, y0, x1, y1))
    if max_side is not None and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return CarriedImage(_png(rgb), rgb.width, rgb.height)
