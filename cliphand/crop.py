"""Square crops of a photo, resized to the model's input, and the intrinsics that go with them.

Pixel coordinates follow :mod:`cliphand.codec`: pixel ``(col, row)`` has its centre at
``uv = (col, row)``. A crop of ``side`` px at ``(x, y)`` resized to ``size`` px maps a point as
``u' = s (u - x + 0.5) - 0.5`` with ``s = size / side`` (``crop_matrix``), so the crop's
intrinsics are ``crop_matrix @ K``.

Without known intrinsics, ``default_intrinsics`` assumes FreiHAND's camera: a focal length of
550 px on its 224-px images (the middle of the 450–650 px its images, and the synthetic set's,
span), scaled to the crop, with the principal point at the crop's centre. Camera-space depth is
then approximate: only the 2D joints are exact for any camera.

Boxes and intrinsics are checked before use (``check_bbox``, ``check_intrinsics``; the ``parse_*``
functions read the command line's text): finite, positive sizes and focal lengths, and within
``MAX_BOX_SIDE`` and ``MAX_INTRINSICS_PX``, so that a bad value is a one-line ValueError rather than
an overflow, a NaN in the output, or a crop too large to allocate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_FOCAL_PX = 550.0  # at DEFAULT_FOCAL_SIZE px
DEFAULT_FOCAL_SIZE = 224
# The crop is cut at full size before it is resized: 8192² px RGB is 200 MB, and below PIL's
# decompression-bomb limit (about 9459² px), which would otherwise stop the crop.
MAX_BOX_SIDE = 8192
MAX_INTRINSICS_PX = 1e6  # |fx|, |fy|, |cx|, |cy|: far beyond any photo PIL opens


@dataclass(frozen=True)
class Box:
    """A square crop: top-left pixel ``(x, y)`` and side, in pixels of the photo."""

    x: int
    y: int
    side: int


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` (pixels) from ``--bbox``, checked by ``check_bbox``; a ValueError names the option."""
    try:
        x, y, w, h = (float(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"--bbox {text!r}: expected four numbers x,y,w,h (pixels)") from None
    return check_bbox((x, y, w, h), "--bbox")


def check_bbox(bbox: Sequence[float], name: str = "bbox") -> tuple[float, float, float, float]:
    """``bbox`` (x, y, w, h) as floats if finite, with ``0 < w, h <= MAX_BOX_SIDE``; else a one-line
    ValueError starting with ``name``. Whether it meets the photo is ``crop_box``'s to check."""
    x, y, w, h = (float(v) for v in bbox)
    where = f"{name} {x:g},{y:g},{w:g},{h:g}"
    if not all(map(math.isfinite, (x, y, w, h))):
        raise ValueError(f"{where}: values must be finite numbers")
    if w <= 0 or h <= 0:
        raise ValueError(f"{where}: width and height must be positive")
    if max(w, h) > MAX_BOX_SIDE:
        raise ValueError(f"{where}: width and height must be at most {MAX_BOX_SIDE} px")
    return x, y, w, h


def crop_box(width: int, height: int, bbox: tuple[float, float, float, float] | None = None) -> Box:
    """The square crop around ``bbox`` (x, y, w, h; side ``max(w, h)``), or the centre square.

    ``bbox`` must pass ``check_bbox``. A box reaching past the photo's border is allowed (the
    outside is filled black); one that misses the photo entirely is an error.
    """
    if bbox is None:
        side = min(width, height)
        return Box((width - side) // 2, (height - side) // 2, side)
    x, y, w, h = check_bbox(bbox)
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(f"bbox {x:g},{y:g},{w:g},{h:g} lies outside the {width}x{height} image")
    side = max(1, round(max(w, h)))
    return Box(round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), side)


def crop_image(image: Image.Image, box: Box, size: int) -> np.ndarray:
    """The crop resized to ``size`` px, uint8 ``[size, size, 3]`` (bilinear, as preprocessing)."""
    patch = image.convert("RGB").crop((box.x, box.y, box.x + box.side, box.y + box.side))
    if patch.size != (size, size):
        patch = patch.resize((size, size), Image.BILINEAR)
    return np.array(patch)  # writable, so torch can take it without a copy warning


def crop_matrix(box: Box, size: int) -> np.ndarray:
    """``[3, 3]``: photo pixel coordinates → pixel coordinates of the crop resized to ``size``."""
    s = size / box.side
    return np.array([[s, 0.0, s * (0.5 - box.x) - 0.5], [0.0, s, s * (0.5 - box.y) - 0.5], [0.0, 0.0, 1.0]])


def default_intrinsics(box: Box) -> np.ndarray:
    """FreiHAND-like intrinsics ``[3, 3]`` in photo pixels for a hand cropped by ``box``."""
    f = DEFAULT_FOCAL_PX * box.side / DEFAULT_FOCAL_SIZE
    c = (box.side - 1) / 2.0
    return np.array([[f, 0.0, box.x + c], [0.0, f, box.y + c], [0.0, 0.0, 1.0]])


def parse_intrinsics(text: str) -> np.ndarray:
    """``"fx,fy,cx,cy"`` (pixels of the photo) from ``--intrinsics`` → ``K`` ``[3, 3]``, checked by
    ``check_intrinsics``; a ValueError names the option."""
    try:
        fx, fy, cx, cy = (float(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"--intrinsics {text!r}: expected four numbers fx,fy,cx,cy (pixels)") from None
    return check_intrinsics(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), "--intrinsics")


def check_intrinsics(K: np.ndarray, name: str = "intrinsics") -> np.ndarray:
    """``K`` as float64 ``[3, 3]`` if finite, with last row ``0, 0, 1``, ``0 < fx, fy`` and
    ``|fx|, |fy|, |cx|, |cy| <= MAX_INTRINSICS_PX``; else a one-line ValueError starting with
    ``name``. A zero or NaN focal length would otherwise be written, as NaN, into the output."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{name}: expected a 3x3 matrix, got shape {K.shape}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    where = f"{name} {fx:g},{fy:g},{cx:g},{cy:g}"
    if not np.isfinite(K).all():
        raise ValueError(f"{where}: values must be finite numbers")
    if fx <= 0 or fy <= 0:
        raise ValueError(f"{where}: focal lengths must be positive")
    if max(fx, fy, abs(cx), abs(cy)) > MAX_INTRINSICS_PX:
        raise ValueError(f"{where}: fx, fy, cx and cy must be at most {MAX_INTRINSICS_PX:.0f} px in size")
    if K[2].tolist() != [0.0, 0.0, 1.0]:
        raise ValueError(f"{where}: the last row of K must be 0, 0, 1")
    return K
