"""Reading an image input with a pixel limit: a decompression bomb is refused before it is decoded.

PIL's own guard (``Image.MAX_IMAGE_PIXELS``) is a process-wide global that warns at its limit and raises
at twice it; here the limit is a parameter, checked against the header's size before any decoding.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000  # ~7000 x 7000: far above any sign or screenshot, far below a bomb
_pil_limit = threading.Lock()


class ImageInputError(ValueError):
    """An image input that cannot be used; the message names the file and why."""


def open_rgb(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image at ``path`` decoded as RGB, or ``ImageInputError`` naming it."""
    try:
        with _pil_limit, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our limit replaces PIL's
            try:
                im = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageInputError(
                    f"{path}: {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,} "
                    "(--max-pixels); not decoded"
                )
            return im.convert("RGB")
    except UnidentifiedImageError as err:
        raise ImageInputError(f"{path}: cannot read image (not a known image format)") from err
    except OSError as err:  # missing, unreadable, truncated
        raise ImageInputError(f"{path}: cannot read image ({err.strerror or err})") from err
