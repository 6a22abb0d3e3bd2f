"""Figures: 2D hand skeletons drawn over images, rendered meshes, contact sheets, atomic PNG output.

Keypoints are pixel coordinates ``uv`` [21, 2] in FreiHAND's joint order (:mod:`cliphand.skeleton`),
pixel ``(col, row)`` centred at ``uv = (col, row)``. Meshes are camera-space vertices (meters; x
right, y down, z forward), drawn by the synthetic set's renderer (:mod:`cliphand.data.render`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cliphand.camera import project
from cliphand.crop import Box, crop_matrix
from cliphand.data import render
from cliphand.files import atomic_path
from cliphand.skeleton import BONES, FINGER_COLORS, NUM_JOINTS, finger_of

_WRIST_COLOR = (255, 255, 255)
_MESH_ALBEDO = np.array([0.80, 0.62, 0.52])  # one neutral skin tone: the shading shows the shape
_MESH_LIGHT = render.Lighting(
    direction=np.array([0.3, -0.5, -1.0]) / np.linalg.norm([0.3, -0.5, -1.0]),  # above left of the camera
    ambient=0.35, diffuse=0.65, fill=0.15, specular=0.08, shininess=20.0, exposure=1.0,
)
_OVERLAY_OPACITY = 0.8  # the photo stays visible through the mesh
_SIDE_BACKGROUND = 235
# Side view: a quarter turn about the camera's vertical axis, (x, y, z) -> (z, y, -x): the camera
# then looks from the right of the scene, depth growing to the right of the picture.
_QUARTER_TURN = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


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


def render_mesh(verts: np.ndarray, faces: np.ndarray | None, K: np.ndarray, size: int,
                background: np.ndarray | Image.Image | None = None, opacity: float = 1.0) -> Image.Image:
    """The mesh ``verts`` [V, 3] seen through ``K`` on a ``size`` px square, over ``background``
    (an image of that size; light grey when None). Without ``faces`` the vertices are drawn as dots."""
    base = (np.full((size, size, 3), _SIDE_BACKGROUND, np.uint8) if background is None
            else np.asarray(to_pil(background)))
    if base.shape[:2] != (size, size):
        raise ValueError(f"background: expected {size}x{size} px, got {base.shape[1]}x{base.shape[0]}")
    verts = np.asarray(verts, dtype=np.float64)
    if faces is None:
        out = Image.fromarray(base)
        draw = ImageDraw.Draw(out)
        for u, v in project(verts, K):
            draw.point((float(u), float(v)), fill=(200, 120, 90))
        return out
    albedo = np.broadcast_to(_MESH_ALBEDO, verts.shape)
    color, alpha, _ = render.render(verts, faces, albedo, K, size, _MESH_LIGHT)  # premultiplied
    mixed = render.composite(opacity * color, opacity * alpha, base.astype(np.float32) / 255.0)
    return to_pil(mixed)


def side_view(verts: np.ndarray, faces: np.ndarray | None, size: int) -> Image.Image:
    """The mesh turned a quarter about the vertical through its centre, seen from the right and
    framed to fill the square (the hand's own scale, not its distance, sets the size)."""
    rel = (np.asarray(verts, dtype=np.float64) - np.mean(verts, axis=0)) @ _QUARTER_TURN.T  # [V, 3]
    radius = max(float(np.linalg.norm(rel, axis=1).max()), 1e-6)
    # f = size at depth 3.5 r: a point r off-axis and r nearer projects 0.4 size from the centre.
    c = (size - 1) / 2.0
    K = np.array([[size, 0.0, c], [0.0, size, c], [0.0, 0.0, 1.0]])
    return render_mesh(rel + np.array([0.0, 0.0, 3.5 * radius]), faces, K, size)


def prediction_panels(image: np.ndarray | Image.Image, K: np.ndarray, joints: np.ndarray, verts: np.ndarray,
                      faces: np.ndarray | None, size: int = 256, title: str = "") -> Image.Image:
    """One row of three ``size`` px panels for a square crop ``image`` with intrinsics ``K``:
    the 2D skeleton (``joints`` [21, 3] projected), the mesh ``verts`` [V, 3] over the image, and
    the mesh from the side. Both overlays come from the same camera-space points through ``K``."""
    pil = to_pil(image)
    if pil.width != pil.height:
        raise ValueError(f"image: expected a square crop, got {pil.width}x{pil.height}")
    K_view = crop_matrix(Box(0, 0, pil.width), size) @ np.asarray(K, dtype=np.float64)  # K of the resized crop
    pil = pil.resize((size, size), Image.Resampling.BICUBIC)
    uv = project(np.asarray(joints, dtype=np.float64), K_view)
    panels = [
        (draw_skeleton(pil, uv), "2D skeleton"),
        (render_mesh(verts, faces, K_view, size, pil, _OVERLAY_OPACITY), "mesh"),
        (side_view(verts, faces, size), "mesh from the right"),
    ]
    gap = 4
    row = Image.new("RGB", (3 * size + 2 * gap, size), (255, 255, 255))
    for i, (panel, label) in enumerate(panels):
        row.paste(_labelled(panel, f"{title}: {label}" if title else label), (i * (size + gap), 0))
    return row


def stack_rows(rows: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    """Images one above the other on white, left-aligned."""
    if not rows:
        raise ValueError("rows: need at least one image")
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + gap * (len(rows) - 1)),
                    (255, 255, 255))
    top = 0
    for r in rows:
        out.paste(r, (0, top))
        top += r.height + gap
    return out


def _labelled(image: Image.Image, text: str) -> Image.Image:
    """A copy with ``text`` in white on a dark strip at the top left."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=13)
    _, _, right, bottom = draw.textbbox((4, 3), text, font=font)
    draw.rectangle([0, 0, right + 4, bottom + 3], fill=(30, 30, 30))
    draw.text((4, 3), text, fill=(255, 255, 255), font=font)
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
    """Write ``image`` as PNG atomically (``files.atomic_path``: the umask's permissions); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        to_pil(image).save(tmp, format="PNG", optimize=True)
    return path
