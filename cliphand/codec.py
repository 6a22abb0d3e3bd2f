"""The 2.5D pose codec: the one place the 2.5D convention is written down (as mmpose's codecs, one
class encodes the training targets and decodes the predictions).

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
``Codec25D.encode`` makes the dataset's targets; ``decode`` and ``lift`` turn predictions back into
camera space for the model, ``cliphand predict`` and the evaluation. All methods are batched torch
ops without host syncs, so they run inside ``forward``, in the caller's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cliphand.camera import project
from cliphand.skeleton import BONES, SCALE_BONE

ROOT = 0
MIN_DEPTH = 1e-3  # meters: the nearest root depth log_apparent_size reads
GAUSS_NEWTON_STEPS = 5  # of root_depth_from_bones: within 0.01 mm of converged on the default model's evaluation split
BONE_PARENTS = torch.tensor([p for p, _ in BONES])
BONE_CHILDREN = torch.tensor([c for _, c in BONES])


@dataclass(frozen=True)
class Codec25D:
    """Camera space ↔ 2.5D for crops of ``image_size`` pixels and depths within ``±depth_range`` scales."""

    image_size: int
    depth_range: float

    def encode(self, xyz: Tensor, K: Tensor, scale: Tensor) -> Tensor:
        """Camera-space joints ``[B, N, 3]`` → normalised 2.5D ``[B, N, 3]``, relative to joint 0 (the wrist).

        ``K`` [B, 3, 3] are the crop's intrinsics, ``scale`` [B] the hand's scale in meters.
        """
        return self.encode_points(xyz, xyz[:, ROOT, 2], K, scale)

    def encode_points(self, xyz: Tensor, root_depth: Tensor, K: Tensor, scale: Tensor) -> Tensor:
        """Camera-space points ``[B, N, 3]`` (vertices) → 2.5D relative to a given root depth ``[B]``."""
        uv = (project(xyz, K) + 0.5) / self.image_size  # [B, N, 2]
        rel = (xyz[..., 2] - root_depth[:, None]) / scale[:, None]  # [B, N]
        d = rel / (2.0 * self.depth_range) + 0.5
        return torch.cat([uv, d[..., None]], dim=-1)

    def uv_error_px(self, pred25d: Tensor | np.ndarray, true25d: Tensor | np.ndarray) -> float:
        """Mean Euclidean error of the joints' u, v ``[N, 21, 3]`` (torch or NumPy) in pixels of the
        crop: the 2D error that the depth lifter, the root's depth and the camera-space joints all
        inherit, whatever the pose head's own depths."""
        return float((((pred25d[..., :2] - true25d[..., :2]) ** 2).sum(-1) ** 0.5).mean()) * self.image_size

    def decode(self, points25d: Tensor, root_depth: Tensor, K: Tensor, scale: Tensor) -> Tensor:
        """2.5D points ``[B, N, 3]`` → camera space, given the root's depth ``[B]``."""
        rays, rel = self._rays_and_depths(points25d, K, scale)
        return rays * (root_depth[:, None] + rel)[..., None]

    def root_depth(self, joints25d: Tensor, K: Tensor, scale: Tensor) -> Tensor:
        """The root's absolute depth ``[B]`` for which the scale bone has length ``scale``.

        With rays ``r_i = K^-1 [u_i, v_i, 1]`` and relative depths ``d_i`` (meters), the joints are
        ``P_i = (z + d_i) r_i``; ``|P_a - P_b| = s`` is a quadratic in the root depth ``z`` whose
        larger root is the hand in front of the camera. A negative discriminant (inconsistent
        predictions) is clamped to zero, which gives the depth of closest fit.
        """
        a_idx, b_idx = SCALE_BONE
        rays, rel = self._rays_and_depths(joints25d, K, scale)
        a = rays[:, a_idx] - rays[:, b_idx]  # [B, 3]
        b = rel[:, a_idx, None] * rays[:, a_idx] - rel[:, b_idx, None] * rays[:, b_idx]  # [B, 3]
        return _larger_root(a, b, scale)

    def root_depth_from_bones(self, joints25d: Tensor, K: Tensor, scale: Tensor, bone_ratios: Tensor) -> Tensor:
        """A robust root depth ``[B]``: the one whose 20 bones best take their typical lengths
        ``bone_ratios[b] * scale`` in least squares.

        Each bone ``(parent, child)`` gives the same quadratic as ``root_depth``; the median of their
        larger roots starts ``GAUSS_NEWTON_STEPS`` steps on the bones' squared length errors. One
        noisy bone cannot throw the hand far off, as it can when the scale bone alone decides, and
        a bone seen end-on, whose length hardly changes with the depth, hardly counts (its residual's
        slope is small), where in the median its root counts as much as any other's.
        """
        parents, children = BONE_PARENTS.to(joints25d.device), BONE_CHILDREN.to(joints25d.device)
        rays, rel = self._rays_and_depths(joints25d, K, scale)
        a = rays[:, parents] - rays[:, children]  # [B, 20, 3]
        b = rel[:, parents, None] * rays[:, parents] - rel[:, children, None] * rays[:, children]
        length = bone_ratios[None, :] * scale[:, None]  # [B, 20]
        z = _larger_root(a, b, length).median(dim=1).values  # [B]
        for _ in range(GAUSS_NEWTON_STEPS):
            bone = z[:, None, None] * a + b  # [B, 20, 3]
            norm = bone.norm(dim=-1).clamp_min(1e-12)
            slope = (bone * a).sum(-1) / norm  # d|bone| / dz, [B, 20]
            step = ((norm - length) * slope).sum(1) / (slope * slope).sum(1).clamp_min(1e-12)
            z = (z - step).clamp_min(MIN_DEPTH)
        return z

    def fit_bone_ratios(self, joints25d: Tensor, K: Tensor, scale: Tensor, root_depth: Tensor) -> Tensor:
        """The median length over the scale ``[20]`` of each bone of 2.5D joints ``[B, 21, 3]`` placed
        at their true root depth ``[B]``.

        Fitted to a model's own predictions on held-out images, these are the ``bone_ratios`` that
        make ``root_depth_from_bones`` read the skeletons the model draws at their true distance: a
        model whose uncertain fingertips land short of the truth draws a smaller hand, which the
        true ratios place too far away.
        """
        cam = self.decode(joints25d, root_depth, K, scale)  # [B, 21, 3]
        parents, children = BONE_PARENTS.to(cam.device), BONE_CHILDREN.to(cam.device)
        lengths = (cam[:, children] - cam[:, parents]).norm(dim=-1) / scale[:, None]  # [B, 20]
        return lengths.median(dim=0).values

    def lift(self, joints25d: Tensor, K: Tensor, scale: Tensor, bone_ratios: Tensor, *points25d: Tensor,
             root_prior: Tensor | None = None) -> list[Tensor]:
        """Predicted 2.5D joints (and any further points, e.g. vertices) → camera space, placed at
        the root depth their bones imply, pulled by ``root_prior`` ``(m, w)`` when given (see the
        module's docstring): ``[joints_cam, *points_cam]``."""
        root = self.root_depth_from_bones(joints25d, K, scale, bone_ratios)  # [B]
        if root_prior is not None:
            m, w = root_prior.to(root.dtype)
            root = depth_from_log_size(m + w * (log_apparent_size(root, K, scale) - m), K, scale)
        return [self.decode(p, root, K, scale) for p in (joints25d, *points25d)]

    def _rays_and_depths(self, points25d: Tensor, K: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
        """Viewing rays with unit depth ``[B, N, 3]`` and root-relative depths in meters ``[B, N]``."""
        uv = points25d[..., :2] * self.image_size - 0.5
        homo = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)  # [B, N, 3]
        # inv_ex: no singularity check, so no host sync on CUDA.
        rays = homo @ torch.linalg.inv_ex(K).inverse.transpose(-1, -2)
        rel = (points25d[..., 2] - 0.5) * (2.0 * self.depth_range) * scale[:, None]
        return rays, rel


def fit_root_prior(estimate: Tensor, truth: Tensor, K: Tensor, scale: Tensor, mean_log_size: float) -> Tensor:
    """The root prior ``(m, w)`` ``[2]`` of ``Codec25D.lift`` from estimated and true root depths
    ``[B]`` of held-out images: ``m`` the training hands' mean log apparent size, ``w`` the weight of
    least squared error ``E[(q̂ - m)(q - m)] / E[(q̂ - m)²]``, kept within [0, 1]."""
    q_hat = log_apparent_size(estimate, K, scale) - mean_log_size
    q = log_apparent_size(truth, K, scale) - mean_log_size
    w = ((q_hat * q).sum() / (q_hat * q_hat).sum().clamp_min(1e-12)).clamp(0.0, 1.0)
    return torch.stack([q.new_tensor(mean_log_size), w])


def log_apparent_size(depth: Tensor, K: Tensor, scale: Tensor) -> Tensor:
    """``log(f * scale / depth)`` ``[B]``: the log of the scale bone's size in the crop, in pixels
    (``f``: the geometric mean of ``K``'s focal lengths), for root depths ``[B]`` in meters.

    A depth at or behind the camera (the bones of a skeleton inconsistent enough imply one) reads
    as ``MIN_DEPTH`` ahead of it, so the result stays finite."""
    return torch.log(_focal(K) * scale / depth.clamp_min(MIN_DEPTH))


def depth_from_log_size(log_size: Tensor, K: Tensor, scale: Tensor) -> Tensor:
    """The inverse of ``log_apparent_size``: root depths ``[B]`` in meters."""
    return _focal(K) * scale * torch.exp(-log_size)


def _focal(K: Tensor) -> Tensor:
    return (K[..., 0, 0] * K[..., 1, 1]).sqrt()


def _larger_root(a: Tensor, b: Tensor, length: Tensor) -> Tensor:
    """The larger root ``z`` of ``|z a + b| = length`` (discriminant clamped at zero)."""
    aa, ab, bb = (a * a).sum(-1), (a * b).sum(-1), (b * b).sum(-1)
    disc = (ab * ab - aa * (bb - length * length)).clamp_min(0.0)
    return (-ab + disc.sqrt()) / aa.clamp_min(1e-12)
