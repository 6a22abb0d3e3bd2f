"""The depth lifter: the joints' depths read from their 2D skeleton (Martinez et al., ICCV 2017).

The pose head reads each joint's depth from image features, and on held-out images that reading
is far worse than the network's 2D joints: the 2D skeleton alone, through the articulations a
hand can take, tells more about the depths than the image does at this budget (docs/recipe.md, "A
plateau"; ``experiments/lifter_ab.py``). The lifter is a small residual MLP from the 2.5D
skeleton's ``u, v`` (root-relative, over their RMS size, so it sees shape and not place or size)
to the root-relative depths in units of the hand's scale: the ``d`` of ``cliphand.codec``.

``fit`` trains it after the network, without images, on the training hands: each articulation
under another training hand's orientation, place and camera (many more views than were rendered),
its 2D joints jittered by the network's own per-joint 2D error on held-out images, so it learns
the depths the network's skeletons imply, not the clean ones'. Unfitted it passes joints through;
in training mode too, so the losses train the network's own depth.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from cliphand.codec import Codec25D
from cliphand.meanhand import canonical_mean_hand
from cliphand.models.prior import hand_frame
from cliphand.skeleton import NUM_JOINTS


def normalised_uv(joints25d: Tensor) -> Tensor:
    """2.5D joints ``[B, 21, 3]`` → ``u, v`` relative to the root over their RMS size ``[B, 21, 2]``."""
    uv = joints25d[..., :2] - joints25d[:, :1, :2]
    return uv / uv.pow(2).sum(-1).mean(1).sqrt().clamp_min(1e-6)[:, None, None]


class DepthLifter(nn.Module):
    """2.5D joints ``[B, 21, 3]`` → the same with ``d`` read from ``u, v`` (see the module's docstring)."""

    def __init__(self, depth_range: float, width: int = 256, blocks: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.depth_range = depth_range
        self.inp = nn.Linear(2 * NUM_JOINTS, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout),
                          nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.out = nn.Linear(width, NUM_JOINTS)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def depths(self, uv: Tensor) -> Tensor:
        """Normalised ``u, v`` ``[B, 21, 2]`` → root-relative depths over the hand's scale ``[B, 21]``."""
        h = self.inp(uv.flatten(1))  # [B, W]
        for block in self.blocks:
            h = h + block(h)
        rel = self.out(h)
        return rel - rel[:, :1]  # the root is at depth 0 by definition

    def forward(self, joints25d: Tensor) -> Tensor:
        if self.training:
            return joints25d
        d = self.depths(normalised_uv(joints25d)) / (2.0 * self.depth_range) + 0.5  # [B, 21]
        # A select, not a branch on the buffer: the exported graph keeps both ways.
        d = torch.where(self.fitted, d.to(joints25d.dtype), joints25d[..., 2])
        return torch.cat([joints25d[..., :2], d[..., None]], dim=-1)

    @torch.enable_grad()
    def fit(self, xyz: np.ndarray, verts: np.ndarray, K: np.ndarray, scale: np.ndarray, noise: np.ndarray,
            codec: Codec25D, steps: int, seed: int, batch_size: int = 256, lr: float = 1e-3) -> dict[str, float]:
        """Train on the training hands (joints ``[N, 21, 3]`` and vertices ``[N, V, 3]`` in meters, one
        per pose, their crops' ``K`` ``[N, 3, 3]`` and ``scale`` ``[N]``) with ``u, v`` jittered by
        ``noise`` ``[21]`` (the network's RMS 2D error per joint and coordinate, in ``u, v`` units);
        returns the last hundred steps' mean absolute depth error, in scales."""
        recombined = _Recombined(xyz, verts, K, scale, codec)
        was_training = self.training
        self.train()
        noise_t = torch.as_tensor(noise, dtype=torch.float32)[:, None]  # [21, 1]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            opt = torch.optim.AdamW(self.parameters(), lr, weight_decay=1e-4)
            schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
            losses = []
            for _ in range(steps):
                uv, rel = recombined.batch(batch_size)  # [b, 21, 2], [b, 21]
                uv = uv + torch.randn_like(uv) * noise_t
                loss = (self.depths(normalised_uv(uv)) - rel).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                losses.append(loss.detach())
        self.train(was_training)
        self.fitted.fill_(True)
        return {"lifter_train_error_scales": float(torch.stack(losses[-100:]).mean())}


class _Recombined:
    """Training hands, each articulation under another hand's orientation, place and camera: 2.5D
    ``u, v`` ``[b, 21, 2]`` and root-relative depths over the scale ``[b, 21]``."""

    def __init__(self, xyz: np.ndarray, verts: np.ndarray, K: np.ndarray, scale: np.ndarray, codec: Codec25D) -> None:
        mean, _ = canonical_mean_hand(xyz.astype(np.float64), verts.astype(np.float64))
        mean = torch.from_numpy((mean - mean.mean(0)) / np.linalg.norm(mean - mean.mean(0)))
        joints = torch.from_numpy(xyz).double()
        self.centre, self.size, self.rot = hand_frame(joints, mean)
        self.canonical = (joints - self.centre) / self.size @ self.rot  # [N, 21, 3]
        self.K, self.scale = torch.from_numpy(K).double(), torch.from_numpy(scale).double()
        self.codec = codec

    def batch(self, n: int) -> tuple[Tensor, Tensor]:
        i, j = torch.randint(len(self.canonical), (2, n))  # articulation i, seen as hand j
        cam = self.canonical[i] @ self.rot[j].transpose(1, 2) * self.size[i] + self.centre[j]  # [n, 21, 3]
        p25 = self.codec.encode(cam, self.K[j], self.scale[i]).float()
        rel = (p25[..., 2] - 0.5) * (2.0 * self.codec.depth_range)
        return p25[..., :2], rel
