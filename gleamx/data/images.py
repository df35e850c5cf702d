"""Every image gleamx decodes goes through :func:`open_image`: its pixel count (and its aspect ratio, which the
model's image processor bounds) is checked first.

``PIL.Image.open`` is lazy: it reads the header, so ``size`` is known before a single pixel is
decoded. A 12000x12000 PNG can be a few hundred kilobytes on disk and 432 MB once decoded (and
several GB inside a processor), so an image over the cap is refused in one line naming the file
and its size. The cap is ``max_pixels`` when given, else the ``GLEAMX_MAX_IMAGE_PIXELS``
environment variable, else :data:`DEFAULT_MAX_IMAGE_PIXELS` (100 M pixels: a 10000x10000
remote-sensing tile passes). PIL's own decompression-bomb warning is silenced (this check
replaces it) and its ``DecompressionBombError`` becomes the same one-line error.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from typing import Any

from PIL import Image

from gleamx.errors import GleamConfigError, GleamDataError, first_line

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
"""Default cap on width x height of any image gleamx decodes."""

ENV_MAX_IMAGE_PIXELS = "GLEAMX_MAX_IMAGE_PIXELS"

MAX_ASPECT_RATIO = 200
"""The longest side over the shortest that the Qwen-VL image processors accept (their ``smart_resize`` raises
past it): checked with the pixel count, so such an image is one line where it enters, not a processor traceback
mid-run."""


class ImageTooLargeError(GleamDataError):
    """An image whose header says it has more pixels than the cap."""


class ImageShapeError(GleamDataError):
    """A readable image whose shape the model's image processor refuses (:data:`MAX_ASPECT_RATIO`)."""


def max_image_pixels(value: int | None = None) -> int:
    """The pixel cap: ``value`` if given, else ``$GLEAMX_MAX_IMAGE_PIXELS``, else 100 M. Must be positive."""
    if value is None:
        env = os.environ.get(ENV_MAX_IMAGE_PIXELS, "").strip().replace("_", "")
        if not env:
            return DEFAULT_MAX_IMAGE_PIXELS
        try:
            value = int(env)
        except ValueError:
            raise GleamConfigError(f"{ENV_MAX_IMAGE_PIXELS}: expected a positive number of pixels, "
                                   f"got {os.environ[ENV_MAX_IMAGE_PIXELS]!r}") from None
        where = ENV_MAX_IMAGE_PIXELS
    else:
        where = "max_pixels"
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GleamConfigError(f"{where}: expected a positive number of pixels, got {value!r}")
    return value


def _name(src: Any, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, dict) and src.get("path"):
        return str(src["path"])
    filename = getattr(src, "filename", None)
    return str(filename) if filename else "<in-memory image>"


def _too_large(name: str, width: int | None, height: int | None, pixels: int, cap: int) -> ImageTooLargeError:
    size = f"{width}x{height} = {pixels:,} pixels" if width is not None else f"{pixels:,} pixels"
    return ImageTooLargeError.at(name, None, "image", f"{size}, over the limit of {cap:,} "
                                 f"(set {ENV_MAX_IMAGE_PIXELS} to raise it)")


def check_size(image: Image.Image, *, max_pixels: int | None = None, name: str | None = None) -> None:
    """Raise :class:`ImageTooLargeError` if ``image`` (opened, not necessarily decoded) is over the cap, and a
    :class:`GleamDataError` if its sides are further apart than :data:`MAX_ASPECT_RATIO`."""
    cap = max_image_pixels(max_pixels)
    width, height = image.size
    if width * height > cap:
        raise _too_large(_name(image, name), width, height, width * height, cap)
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageShapeError.at(_name(image, name), None, "image", f"{width}x{height}: expected sides at most "
                                f"{MAX_ASPECT_RATIO} times one another (the model's image processor refuses more)")


def open_lazy(src: Any, *, max_pixels: int | None = None, name: str | None = None) -> Image.Image:
    """Open ``src`` (a path, bytes, a file object, a ``datasets`` ``{"bytes", "path"}`` value or a PIL
    image) reading only its header, and check its pixel count. Decoding errors are PIL's own."""
    cap = max_image_pixels(max_pixels)
    shown = _name(src, name)
    if isinstance(src, Image.Image):
        check_size(src, max_pixels=cap, name=shown)
        return src
    if isinstance(src, dict):
        src = io.BytesIO(src["bytes"]) if src.get("bytes") else src.get("path")
    elif isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the check below replaces it
        try:
            im = Image.open(src)
        except Image.DecompressionBombError as e:
            m = re.search(r"\((\d+) pixels\)", str(e))
            pixels = int(m.group(1)) if m else cap + 1
            err = _too_large(shown, None, None, pixels, cap)
            if pixels <= cap:  # the cap was raised past PIL's own limit
                pil_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
                err = ImageTooLargeError.at(shown, None, "image", f"{pixels:,} pixels, over PIL's decompression-bomb "
                                            f"limit of {pil_limit:,} (PIL.Image.MAX_IMAGE_PIXELS)")
            raise err from None
    try:
        check_size(im, max_pixels=cap, name=shown)
    except ImageTooLargeError:
        im.close()
        raise
    return im


def open_image(src: Any, *, max_pixels: int | None = None, mode: str | None = "RGB",
               name: str | None = None) -> Image.Image:
    """The decoded image (converted to ``mode``; ``None`` keeps its own) after the pixel-count check.

    An image over the cap raises :class:`ImageTooLargeError`; a file PIL cannot read raises
    :class:`~gleamx.errors.GleamDataError` (``file: image: cannot decode (...)``). Both are one line.
    """
    shown = _name(src, name)
    try:
        im = open_lazy(src, max_pixels=max_pixels, name=shown)
        if mode is None or im.mode == mode:
            im.load()
            return im
        if isinstance(src, Image.Image):  # the caller's image: converted, left open
            return im.convert(mode)
        with im:
            return im.convert(mode)
    except GleamDataError:
        raise
    except FileNotFoundError:
        raise GleamDataError.at(shown, None, "image", "file not found") from None
    except Image.DecompressionBombError as e:  # raised while decoding a later frame (GIF, TIFF)
        raise ImageTooLargeError.at(shown, None, "image", first_line(e)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # PIL raises several types for bad files
        raise GleamDataError.at(shown, None, "image", f"cannot decode ({first_line(e, with_type=True)}); "
                                "expected a readable PNG/JPEG/WebP") from None
