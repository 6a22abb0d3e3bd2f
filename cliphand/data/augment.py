"""Training-time augmentation that keeps the image, the camera and the 3D targets consistent.

A roll by θ is the hand turning about the camera's optical axis (``X' = R_z(θ) X``); a zoom by
``s`` and a shift ``t`` of the principal point are a new camera (``K' = A K`` with ``A`` the 2D
similarity). The image then moves by the affine map ``A K R_z K⁻¹`` exactly, for any pinhole ``K``,
and the 2.5D targets and the prompts are recomputed from the new joints, so nothing drifts apart.
Colour: brightness, contrast and saturation jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cliphand.config import AugmentConfig


@dataclass(frozen=True)
class Warp:
    """One draw: the 3D turn ``rotation`` [3, 3], the camera change ``camera`` [3, 3] and colour factors."""

    rotation: np.ndarray
    camera: np.ndarray
    brightness: float
    contrast: float
    saturation: float


def draw(cfg: AugmentConfig, rng: np.random.Generator, K: np.ndarray, size: int) -> Warp:
    """A random warp for an image of ``size`` px with intrinsics ``K``."""
    theta = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    c, s = np.cos(theta), np.sin(theta)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    zoom = rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale)
    shift = rng.uniform(-cfg.translate, cfg.translate, 2) * size
    cx, cy = K[0, 2], K[1, 2]
    # Zoom about the principal point, then shift it.
    camera = np.array([[zoom, 0.0, (1 - zoom) * cx + shift[0]], [0.0, zoom, (1 - zoom) * cy + shift[1]], [0.0, 0.0, 1.0]])
    jitter = rng.uniform(1.0 - cfg.color, 1.0 + cfg.color, 3)
    return Warp(rotation, camera, *jitter)


def apply(warp: Warp, image: np.ndarray, K: np.ndarray, points: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The warped image ``[S, S, 3]`` uint8, the new intrinsics and the turned points (camera space)."""
    K_new = warp.camera @ K
    pixel_map = K_new @ warp.rotation @ np.linalg.inv(K)  # old pixel → new pixel (affine: K's last row is 0, 0, 1)
    inverse = np.linalg.inv(pixel_map)  # PIL asks, for each output pixel, where to read
    pil = Image.fromarray(image)
    fill = tuple(int(v) for v in image.reshape(-1, 3).mean(0))
    warped = pil.transform(pil.size, Image.AFFINE, tuple(inverse[:2].ravel()), resample=Image.BILINEAR, fillcolor=fill)
    out = np.asarray(warped, dtype=np.float32)
    mean = out.mean()
    out = (out - mean) * warp.contrast + mean  # contrast about the mean grey level
    grey = out.mean(-1, keepdims=True)
    out = (grey + (out - grey) * warp.saturation) * warp.brightness
    turned = [p @ warp.rotation.T for p in points]
    return np.clip(out, 0, 255).astype(np.uint8), K_new, turned
