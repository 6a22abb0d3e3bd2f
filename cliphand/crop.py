"""Square crops of a photo, resized to the model's input, and the intrinsics that go with them.

Pixel coordinates follow :mod:`cliphand.geometry`: pixel ``(col, row)`` has its centre at
``uv = (col, row)``. A crop of ``side`` px at ``(x, y)`` resized to ``size`` px maps a point as
``u' = s (u - x + 0.5) - 0.5`` with ``s = size / side`` (``crop_matrix``), so the crop's
intrinsics are ``crop_matrix @ K``.

Without known intrinsics, ``default_intrinsics`` assumes FreiHAND's camera: a focal length of
550 px on its 224-px images (the middle of the 450–650 px its images, and the synthetic set's,
span), scaled to the crop, with the principal point at the crop's centre. Camera-space depth is
then approximate: only the 2D joints are exact for any camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

DEFAULT_FOCAL_PX = 550.0  # at DEFAULT_FOCAL_SIZE px
DEFAULT_FOCAL_SIZE = 224


@dataclass(frozen=True)
class Box:
    """A square crop: top-left pixel ``(x, y)`` and side, in pixels of the photo."""

    x: int
    y: int
    side: int


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` (pixels) → a tuple; a ValueError says what is wrong."""
    parts = text.split(",")
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"bbox {text!r}: expected four numbers x,y,w,h (pixels)") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"bbox {text!r}: width and height must be positive")
    return x, y, w, h


def crop_box(width: int, height: int, bbox: tuple[float, float, float, float] | None = None) -> Box:
    """The square crop around ``bbox`` (x, y, w, h; side ``max(w, h)``), or the centre square.

    A box reaching past the photo's border is allowed (the outside is filled black); one that
    misses the photo entirely is an error.
    """
    if bbox is None:
        side = min(width, height)
        return Box((width - side) // 2, (height - side) // 2, side)
    x, y, w, h = bbox
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
    """``"fx,fy,cx,cy"`` (pixels of the photo) → ``K`` ``[3, 3]``."""
    try:
        fx, fy, cx, cy = (float(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"intrinsics {text!r}: expected four numbers fx,fy,cx,cy (pixels)") from None
    if fx <= 0 or fy <= 0:
        raise ValueError(f"intrinsics {text!r}: focal lengths must be positive")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
