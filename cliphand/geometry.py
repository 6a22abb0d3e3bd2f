"""The 2.5D pose convention, written down once.

A hand is represented in the crop by 2.5D coordinates, each in [0, 1] over its range:

- ``u, v``: the joint's projection in the crop over the crop's size. Pixel ``i`` has its centre
  at pixel coordinate ``i`` (OpenCV's and FreiHAND's convention) and covers ``[i - 0.5, i + 0.5]``,
  so normalised it is ``(i + 0.5) / size``: the whole image spans [0, 1], like the heatmap bins
  and ``grid_sample(align_corners=False)``; ``u`` grows left to right, ``v`` top to bottom;
- ``d``: the depth relative to the root joint (the wrist) in units of the hand's scale (FreiHAND's
  ``scale``: the length of the middle MCP-PIP bone), mapped from ``[-depth_range, depth_range]``
  to ``[0, 1]``.

Camera-space joints (meters; x right, y down, z forward) are recovered from 2.5D coordinates with
the crop's intrinsics ``K`` and the scale: the root's absolute depth is the one for which the
scale bone has its known length (Iqbal et al., ECCV 2018), the larger root of a quadratic.
All functions are batched torch ops without host syncs, so they run inside ``forward``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cliphand.skeleton import BONES, SCALE_BONE

ROOT = 0
BONE_PARENTS = torch.tensor([p for p, _ in BONES])
BONE_CHILDREN = torch.tensor([c for _, c in BONES])


def project(xyz: Tensor, K: Tensor) -> Tensor:
    """Pinhole projection of camera-space points ``[..., N, 3]`` to pixels ``[..., N, 2]``."""
    uvw = xyz @ K.transpose(-1, -2)  # [..., N, 3]
    return uvw[..., :2] / uvw[..., 2:3]


def camera_to_25d(
    xyz: Tensor, K: Tensor, scale: Tensor, image_size: int, depth_range: float
) -> Tensor:
    """Camera-space points ``[B, N, 3]`` → normalised 2.5D ``[B, N, 3]``.

    ``K`` [B, 3, 3] are the crop's intrinsics, ``scale`` [B] the hand's scale in meters; the root is
    point 0 (the wrist, for joints). Other points (vertices) go through ``points_to_25d``.
    """
    return points_to_25d(xyz, xyz[:, ROOT, 2], K, scale, image_size, depth_range)


def points_to_25d(
    xyz: Tensor, root_depth: Tensor, K: Tensor, scale: Tensor, image_size: int, depth_range: float
) -> Tensor:
    """Camera-space points ``[B, N, 3]`` → 2.5D relative to a given root depth ``[B]``."""
    uv = (project(xyz, K) + 0.5) / image_size  # [B, N, 2]
    rel = (xyz[..., 2] - root_depth[:, None]) / scale[:, None]  # [B, N]
    d = rel / (2.0 * depth_range) + 0.5
    return torch.cat([uv, d[..., None]], dim=-1)


def root_depth_from_25d(
    joints25d: Tensor, K: Tensor, scale: Tensor, image_size: int, depth_range: float
) -> Tensor:
    """The root's absolute depth ``[B]`` for which the scale bone has length ``scale``.

    With rays ``r_i = K^-1 [u_i, v_i, 1]`` and relative depths ``d_i`` (meters), the joints are
    ``P_i = (z + d_i) r_i``; ``|P_a - P_b| = s`` is a quadratic in the root depth ``z`` whose larger
    root is the hand in front of the camera. A negative discriminant (inconsistent predictions) is
    clamped to zero, which gives the depth of closest fit.
    """
    a_idx, b_idx = SCALE_BONE
    rays, rel = _rays_and_depths(joints25d, K, scale, image_size, depth_range)
    a = rays[:, a_idx] - rays[:, b_idx]  # [B, 3]
    b = rel[:, a_idx, None] * rays[:, a_idx] - rel[:, b_idx, None] * rays[:, b_idx]  # [B, 3]
    aa = (a * a).sum(-1)
    ab = (a * b).sum(-1)
    bb = (b * b).sum(-1)
    disc = (ab * ab - aa * (bb - scale * scale)).clamp_min(0.0)
    return (-ab + disc.sqrt()) / aa.clamp_min(1e-12)


def root_depth_from_bones(
    joints25d: Tensor, K: Tensor, scale: Tensor, bone_ratios: Tensor, image_size: int, depth_range: float
) -> Tensor:
    """A robust root depth ``[B]``: the median of the depths each of the 20 bones implies.

    Each bone ``(parent, child)`` with its typical length ``bone_ratios[b] * scale`` gives the
    same quadratic as ``root_depth_from_25d``; one noisy bone (or one seen end-on, whose length
    hardly constrains the depth) cannot then throw the whole hand far off, as it can when the
    scale bone alone decides.
    """
    parents, children = BONE_PARENTS.to(joints25d.device), BONE_CHILDREN.to(joints25d.device)
    rays, rel = _rays_and_depths(joints25d, K, scale, image_size, depth_range)
    a = rays[:, parents] - rays[:, children]  # [B, 20, 3]
    b = rel[:, parents, None] * rays[:, parents] - rel[:, children, None] * rays[:, children]
    length = bone_ratios[None, :] * scale[:, None]  # [B, 20]
    aa, ab, bb = (a * a).sum(-1), (a * b).sum(-1), (b * b).sum(-1)
    disc = (ab * ab - aa * (bb - length * length)).clamp_min(0.0)
    roots = (-ab + disc.sqrt()) / aa.clamp_min(1e-12)
    return roots.median(dim=1).values


def from_25d(
    points25d: Tensor,
    root_depth: Tensor,
    K: Tensor,
    scale: Tensor,
    image_size: int,
    depth_range: float,
) -> Tensor:
    """2.5D points ``[B, N, 3]`` → camera space, given the root's depth ``[B]``."""
    rays, rel = _rays_and_depths(points25d, K, scale, image_size, depth_range)
    return rays * (root_depth[:, None] + rel)[..., None]


def _rays_and_depths(
    points25d: Tensor, K: Tensor, scale: Tensor, image_size: int, depth_range: float
) -> tuple[Tensor, Tensor]:
    """Viewing rays with unit depth ``[B, N, 3]`` and root-relative depths in meters ``[B, N]``."""
    uv = points25d[..., :2] * image_size - 0.5
    homo = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)  # [B, N, 3]
    # inv_ex: no singularity check, so no host sync on CUDA.
    rays = homo @ torch.linalg.inv_ex(K).inverse.transpose(-1, -2)
    rel = (points25d[..., 2] - 0.5) * (2.0 * depth_range) * scale[:, None]
    return rays, rel
