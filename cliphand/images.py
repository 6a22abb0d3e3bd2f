"""Photos given by the user: which files, checked before any work, and decoded as the model sees them.

Only ``IMAGE_FORMATS`` are opened: PIL's other plugins are never tried (EPS, for one, runs
Ghostscript). ``read_image`` decodes a photo fully, so a truncated or damaged file, or one too large
(PIL's decompression-bomb limit), is an ``InputError`` naming it; ``image_files`` reads every file
that way before returning, so a bad file stops a run before any output is written.

The decoded photo is upright RGB, 8 bits per channel:

- the EXIF orientation (phone photos) is applied;
- 16-bit greyscale (PNG, TIFF) is scaled to 8 bits (``value / 257``) rather than clipped to white;
  PIL's 32-bit integer greyscale is taken as the same 16-bit range, anything above clipped;
- transparency (an alpha channel, or a palette's or PNG's transparent colour) is composited over
  mid-grey ``BACKGROUND``: neither dark nor light, so a cut-out hand of any skin tone keeps an edge;
- palette, CMYK, greyscale and other modes go through PIL's conversion to RGB (embedded colour
  profiles are not applied);
- floating-point images (mode ``F``) have no known range and are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
BACKGROUND = (128, 128, 128)
# PIL's JPEG reader gives MPO for a JPEG with extra pictures (phones store depth or gain maps so);
# the first picture is the photo.
_OPENED_FORMATS = (*IMAGE_FORMATS, "MPO")
# What PIL's readers raise on damaged files; DecompressionBombError is not an OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                  struct.error, Image.DecompressionBombError)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class InputError(ValueError):
    """An image, folder or model given by the user that cannot be used; the message names it."""


def image_files(inputs: Sequence[Path | str]) -> list[Path]:
    """The image files named by ``inputs`` (files, or folders read one level deep, sorted).

    Every file is decoded here (``read_image``), so a file that is not a usable image stops the
    run before any model is loaded or any output written.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{item}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    for path in files:
        read_image(path)
    return files


def read_image(path: Path | str) -> Image.Image:
    """The photo at ``path``, fully decoded, upright, RGB with 8 bits per channel (see the module).

    Anything wrong with the file raises a one-line InputError naming it.
    """
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            if image.format not in _OPENED_FORMATS:
                raise ValueError(f"{image.format} is not one of {', '.join(IMAGE_FORMATS)}")
            return _to_rgb(ImageOps.exif_transpose(image))  # which decodes the whole image
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image (damaged, or not one of "
                         f"{', '.join(IMAGE_FORMATS)})") from None
    except _DECODE_ERRORS as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"{path}: not a readable image ({reason})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: 16-bit greyscale scaled, transparency over ``BACKGROUND``."""
    if image.mode == "F":
        raise ValueError("floating-point pixels (mode F) have no known range")
    if image.mode.startswith("I"):  # I;16, I;16B, ... and I
        grey = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255)
        return Image.fromarray(np.round(grey).astype(np.uint8)).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")
