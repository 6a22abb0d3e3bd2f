"""The pose prior: the network's hand pulled toward the training hands, as far as its error warrants.

In the hand's own frame (centred on its joints' centroid, scaled to unit norm, rotated onto the
canonical mean hand: ``cliphand.meanhand``), the training hands vary along a few principal
directions. A prediction is the truth plus the network's error; per direction, the estimate of the
truth with the least squared error that is linear in the prediction's coefficient ``c`` is
``w c`` with ``w = E[c_pred c_true] / E[c_pred²]`` (a Wiener filter). ``fit`` measures ``w`` on the
validation split, after training: ``w`` near 1 where the network sees the pose, near 0 where its
error swamps the signal, so the prediction falls back to the mean hand there. The joints and the
vertices each have their own directions and weights; both move with the joints' transform, and
the hand is put back where the network placed it, at its size and turn (what PA alignment
discards is untouched). Unfitted (``weights`` empty) the prior passes predictions through.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from cliphand.meanhand import canonical_mean_hand


def hand_frame(joints: Tensor, mean: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Centre ``[B, 1, 3]``, size ``[B, 1, 1]`` and rotation ``[B, 3, 3]`` taking each hand ``[B, 21, 3]``
    into the frame of ``mean`` [21, 3] (centred, unit norm): ``(joints - centre) / size @ R ≈ mean``."""
    centre = joints.mean(1, keepdim=True)
    size = (joints - centre).flatten(1).norm(dim=1)[:, None, None].clamp_min(1e-9)
    u, _, vh = torch.linalg.svd(((joints - centre) / size).transpose(1, 2) @ mean)  # [B, 3, 3]
    d = torch.det(u @ vh).sign()  # no reflections: a right hand stays a right hand
    u = torch.cat([u[..., :2], u[..., 2:] * d[:, None, None]], dim=-1)
    return centre, size, u @ vh


class PoseSpace(nn.Module):
    """One point set's mean ``[P, 3]``, principal directions ``[K, 3P]`` and fitted weights ``[K]``
    in the hand's frame."""

    def __init__(self, points: int, components: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(points, 3))
        self.register_buffer("basis", torch.zeros(components, points * 3))
        self.register_buffer("weights", torch.zeros(components))

    def coefficients(self, canonical: Tensor) -> Tensor:
        """Points in the hand's frame ``[B, P, 3]`` → coefficients ``[B, K]``."""
        return (canonical - self.mean).flatten(1) @ self.basis.T

    def forward(self, canonical: Tensor) -> Tensor:
        """``[B, P, 3]`` in the hand's frame → the filtered estimate, same shape."""
        coef = self.coefficients(canonical) * self.weights  # [B, K]
        return self.mean + (coef @ self.basis).unflatten(1, (-1, 3))


class PosePrior(nn.Module):
    """The Wiener-filtered hand (see the module's docstring) for joints ``[B, 21, 3]`` and vertices
    ``[B, V, 3]`` in camera space; identity until ``fit`` has run."""

    def __init__(self, num_joints: int, num_verts: int, components: int) -> None:
        super().__init__()
        self.joints = PoseSpace(num_joints, components)
        self.verts = PoseSpace(num_verts, components)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @property
    def components(self) -> int:
        return self.joints.basis.shape[0]

    def forward(self, joints: Tensor, verts: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        if not self.components or not bool(self.fitted):
            return joints, verts
        dtype = joints.dtype
        j = joints.float()
        centre, size, rot = hand_frame(j, self.joints.mean)
        to_hand = lambda p: (p.float() - centre) / size @ rot  # noqa: E731
        back = lambda p: (p @ rot.transpose(1, 2) * size + centre).to(dtype)  # noqa: E731
        out_j = back(self.joints(to_hand(j)))
        out_v = back(self.verts(to_hand(verts))) if verts is not None else None
        return out_j, out_v

    @torch.no_grad()
    def fit(self, train_joints: np.ndarray, train_verts: np.ndarray, pred: tuple[np.ndarray, np.ndarray],
            true: tuple[np.ndarray, np.ndarray]) -> dict[str, float]:
        """Principal directions of the training hands ``[N, 21, 3]``, ``[N, V, 3]`` (meters, one per
        pose) and their weights from predictions and truths of held-out images (``(joints, verts)``
        each); returns the mean weight of the first three directions of each point set."""
        mean_j, mean_v = canonical_mean_hand(train_joints.astype(np.float64), train_verts.astype(np.float64))
        norm = np.linalg.norm(mean_j - mean_j.mean(0))
        self.joints.mean.copy_(torch.from_numpy((mean_j - mean_j.mean(0)) / norm))
        self.verts.mean.copy_(torch.from_numpy((mean_v - mean_j.mean(0)) / norm))

        def canonical(joints: np.ndarray, verts: np.ndarray) -> tuple[Tensor, Tensor]:
            j, v = torch.from_numpy(joints).float(), torch.from_numpy(verts).float()
            centre, size, rot = hand_frame(j, self.joints.mean)
            return (j - centre) / size @ rot, (v - centre) / size @ rot

        train = canonical(train_joints, train_verts)
        held_pred, held_true = canonical(*pred), canonical(*true)
        report = {}
        for name, space, x, p, t in zip(("joints", "verts"), (self.joints, self.verts), train, held_pred, held_true):
            _, _, vh = torch.linalg.svd((x - space.mean).flatten(1).double(), full_matrices=False)
            space.basis.zero_()  # fewer training hands than directions: the rest stay empty
            space.basis[: len(vh)] = vh[: self.components].float()
            cp, ct = space.coefficients(p).double(), space.coefficients(t).double()
            space.weights.copy_(((cp * ct).sum(0) / (cp * cp).sum(0).clamp_min(1e-12)).clamp(0.0, 1.0).float())
            report[f"prior_{name}_weight_top3"] = float(space.weights[:3].mean())
        self.fitted.fill_(True)
        return report
