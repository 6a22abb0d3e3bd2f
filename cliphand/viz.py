"""Figures: 2D hand skeletons drawn over images, contact sheets, atomic PNG output.

Keypoints are pixel coordinates ``uv`` [21, 2] in FreiHAND's joint order (:mod:`cliphand.skeleton`),
pixel ``(col, row)`` centred at ``uv = (col, row)``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cliphand.skeleton import BONES, FINGER_COLORS, NUM_JOINTS, finger_of

_WRIST_COLOR = (255, 255, 255)


def to_pil(image: np.ndarray | Image.Image) -> Image.Image:
    """An RGB PIL image from a PIL image or an array [H, W, 3] / [H, W] (uint8, or floats in
    [0, 1])."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def draw_skeleton(image: np.ndarray | Image.Image, uv: np.ndarray, *,
                  line_width: int | None = None, joint_radius: float | None = None,
                  colors: Sequence[tuple[int, int, int]] = FINGER_COLORS) -> Image.Image:
    """A copy of ``image`` with the hand skeleton ``uv`` [21, 2] (pixels) drawn over it.

    Bones take the colour of their finger in ``colors`` (thumb..little), joints are dots. Line
    width and dot radius default to sizes that suit the image size.
    """
    uv = np.asarray(uv, dtype=np.float64)
    if uv.shape != (NUM_JOINTS, 2):
        raise ValueError(f"uv: expected shape ({NUM_JOINTS}, 2), got {uv.shape}")
    out = to_pil(image).copy()
    size = min(out.size)
    width = line_width if line_width is not None else max(1, round(size / 80))
    radius = joint_radius if joint_radius is not None else max(1.5, size / 70)
    draw = ImageDraw.Draw(out)
    for parent, child in BONES:
        draw.line([tuple(uv[parent]), tuple(uv[child])], fill=colors[finger_of(child)],
                  width=width)
    for j, (u, v) in enumerate(uv):
        finger = finger_of(j)
        fill = _WRIST_COLOR if finger < 0 else colors[finger]
        draw.ellipse([u - radius, v - radius, u + radius, v + radius], fill=fill,
                     outline=(0, 0, 0))
    return out


def contact_sheet(images: Sequence[np.ndarray | Image.Image],
                  uvs: Sequence[np.ndarray | None] | None = None, ncols: int = 4,
                  tile: int = 128, gap: int = 2,
                  background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Images in a grid of ``tile`` px squares, each with its skeleton ``uvs[i]`` (pixels of the
    original image; None for none) drawn after resizing."""
    if not images:
        raise ValueError("images: need at least one image")
    if ncols < 1 or tile < 1:
        raise ValueError(f"ncols and tile must be positive, got {ncols} and {tile}")
    if uvs is not None and len(uvs) != len(images):
        raise ValueError(f"uvs: expected {len(images)} entries, got {len(uvs)}")
    nrows = -(-len(images) // ncols)
    sheet = Image.new("RGB", (ncols * tile + (ncols + 1) * gap, nrows * tile + (nrows + 1) * gap),
                      background)
    for i, image in enumerate(images):
        pil = to_pil(image)
        scale = np.array([tile / pil.width, tile / pil.height])
        pil = pil.resize((tile, tile), Image.Resampling.BILINEAR)
        if uvs is not None and uvs[i] is not None:
            # Pixel centres map as (p + 0.5) * scale - 0.5 under resizing.
            pil = draw_skeleton(pil, (np.asarray(uvs[i]) + 0.5) * scale - 0.5)
        row, col = divmod(i, ncols)
        sheet.paste(pil, (gap + col * (tile + gap), gap + row * (tile + gap)))
    return sheet


def save_png(image: np.ndarray | Image.Image, path: Path | str) -> Path:
    """Write ``image`` as PNG atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            to_pil(image).save(f, format="PNG", optimize=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
