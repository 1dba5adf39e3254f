"""The one gate every picture from outside passes (uploads, masks, dropped PNGs, fine-tune sets
and the files inside their zips): format, size and pixel count are checked on the header, before
any pixels are decoded, so a "decompression bomb" or a 12000x12000 PNG costs nothing; what passes
is decoded one picture at a time. Torch-free and app-free: the model's data code uses it too.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

from PIL import Image, ImageOps

log = logging.getLogger(__name__)

MAX_SIDE = 8192
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # what Pillow may open for us


class PictureError(ValueError):
    """A picture that cannot be used, with a sentence that says why and what to do."""


def open_picture(
    source: bytes | str | Path,
    what: str = "the picture",
    mode: str | None = "RGB",
    max_short_side: int | None = None,
) -> Image.Image:
    """Decode one picture (turned upright by its EXIF tag), or raise PictureError with a sentence.

    source: file bytes or a path. mode: convert to it (None keeps the file's). max_short_side:
    shrink pictures whose shorter side is larger to it (a training set needs no more), so that a
    set of big photos is never all in memory at full size."""
    if not isinstance(source, (bytes, bytearray, str, Path)) or (
        not isinstance(source, (bytes, bytearray)) and "\x00" in str(source)
    ):
        raise PictureError(f"{what} is not a file name or picture data; upload a PNG, JPEG or WebP file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
            with Image.open(stream, formats=FORMATS) as im:
                w, h = im.size
                if w < 1 or h < 1 or max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
                    raise PictureError(
                        f"{what} is {w}x{h} pixels; pictures may have at most {MAX_PIXELS:,} pixels and "
                        f"{MAX_SIDE} per side: scale it down and try again"
                    )
                if max_short_side is not None and min(w, h) > max_short_side:
                    scale = max_short_side / min(w, h)
                    im.draft(im.mode, (round(w * scale), round(h * scale)))  # JPEG: decode smaller
                im.load()
                image = ImageOps.exif_transpose(im)
                if max_short_side is not None and min(image.size) > max_short_side:
                    scale = max_short_side / min(image.size)
                    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                    image = image.resize(size, Image.LANCZOS)
                return image.convert(mode) if mode is not None and image.mode != mode else image.copy()
    except PictureError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PictureError(
            f"{what} declares far too many pixels to be opened safely; pictures may have at most "
            f"{MAX_PIXELS:,} pixels and {MAX_SIDE} per side: scale it down and try again"
        ) from None
    except FileNotFoundError:
        raise PictureError(f"{what} could not be found; upload it again") from None
    except IsADirectoryError:
        raise PictureError(f"{what} is a folder, not a picture file") from None
    except Image.UnidentifiedImageError:
        raise PictureError(
            f"{what} is not a picture in a format this app reads ({', '.join(FORMATS)})"
        ) from None
    except Exception as err:  # noqa: BLE001 - PIL raises many types for damaged files; all mean "unreadable"
        log.info("unreadable image: %s: %s", type(err).__name__, err)
        raise PictureError(f"{what} is damaged or cut short and cannot be read; save it again") from None
