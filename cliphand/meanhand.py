"""The canonical mean hand: training hands averaged in the hand's own frame (generalised Procrustes).

Averaging hands in camera space blurs hands seen from every side into a line-shaped blob; rotated
onto each other first, they average to a hand. The mesh hierarchy is built on it (so its blends
join neighbouring vertices of one finger, not vertices of different fingers that a blurred mean put
side by side) and the evaluation's baseline predicts it for every image.
"""

from __future__ import annotations

import numpy as np


def _rotations_onto(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Proper rotations ``[N, 3, 3]`` with ``points[i] @ R[i] ≈ target`` (centred ``[N, K, 3]`` and ``[K, 3]``)."""
    u, _, vt = np.linalg.svd(points.transpose(0, 2, 1) @ target)  # [N, 3, 3]
    d = np.sign(np.linalg.det(u @ vt))  # no reflections: the mean of right hands is a right hand
    u[:, :, -1] *= d[:, None]
    return u @ vt


def canonical_mean_hand(xyz: np.ndarray, verts: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Procrustes: joints ``[N, 21, 3]`` and vertices ``[N, 778, 3]`` → the mean hand's
    joints ``[21, 3]`` and vertices ``[778, 3]`` in its own frame, at the hands' mean size.

    Each hand is centred on its joints' centroid and scaled to unit norm, then rotated onto the
    running mean until it settles; the vertices follow their hand's transform.
    """
    centre = xyz.mean(1, keepdims=True)
    size = np.linalg.norm(xyz - centre, axis=(1, 2))[:, None, None]
    joints, mesh = (xyz - centre) / size, (verts - centre) / size
    mean = joints[0]
    for _ in range(iterations):
        rot = _rotations_onto(joints, mean)
        mean = (joints @ rot).mean(0)
        mean /= np.linalg.norm(mean)
    rot = _rotations_onto(joints, mean)
    scale = size.mean()
    return (joints @ rot).mean(0) * scale, (mesh @ rot).mean(0) * scale
