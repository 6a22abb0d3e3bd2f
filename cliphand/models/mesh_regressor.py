"""The coarse-to-fine mesh regressor: 21 joints → 98 → 195 → 389 → 778 vertices.

Each level up-samples the previous level's node features and coordinates with a learned matrix
(initialised from the mesh hierarchy), adds the level's template as positional encoding and the
image features sampled at the projected points from the pyramid level of matching resolution
(C5 for the coarsest, C2 for the full mesh), refines with a small transformer over the nodes and
predicts a coordinate correction. Coordinates are 2.5D (see ``cliphand.codec``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliphand.config import MeshConfig
from cliphand.devices import attention_kernel
from cliphand.models.hierarchy import MeshHierarchy


def sample_features(fmap: Tensor, uv: Tensor) -> Tensor:
    """Bilinear features of ``[B, C, H, W]`` at points ``uv`` in [0, 1] ``[B, N, 2]`` → ``[B, N, C]``."""
    grid = (uv * 2.0 - 1.0).unsqueeze(2)  # [B, N, 1, 2]
    out = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.squeeze(-1).transpose(1, 2)


def sample_projected(fmap: Tensor, uv: Tensor, weight: Tensor) -> Tensor:
    """``sample_features(fmap, uv) @ weight.T`` ``[B, N, out]``, projected where there are fewer points.

    Bilinear sampling with border padding blends four pixels with weights that sum to 1, so it
    commutes with a linear map: a coarse map (C5 is 8 x 8 at 256 px) is cheaper to project whole
    than at each of the 98 points sampled from it.
    """
    if fmap.shape[-2] * fmap.shape[-1] < uv.shape[1]:
        return sample_features(F.conv2d(fmap, weight[:, :, None, None]), uv)
    return F.linear(sample_features(fmap, uv), weight)


def _transformer(width: int, layers: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        width, heads, dim_feedforward=2 * width, dropout=0.0, batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class Blend(nn.Module):
    """Up-sampling that stays a blend: each finer node a convex combination of its nearest coarser ones.

    Rows are non-negative and sum to one, so the blend commutes with translations and keeps a
    vertex inside its neighbours' hull: unconstrained trainable matrices (the authors') can drift
    in row sum and scale the mesh about the origin of its coordinates. ``learned`` lets the weights
    train within that constraint (a softmax over each row's support); otherwise they stay as built.
    """

    def __init__(self, weights: Tensor, learned: bool) -> None:
        super().__init__()
        support = weights > 0
        self.register_buffer("support", support)
        if learned:
            self.logits = nn.Parameter(weights.clamp_min(1e-12).log().masked_fill(~support, 0.0))
        else:
            self.register_buffer("fixed", weights.clone())

    def forward(self) -> Tensor:
        """The blend matrix ``[n, n_prev]``."""
        if hasattr(self, "logits"):
            return self.logits.masked_fill(~self.support, float("-inf")).softmax(-1)
        return self.fixed


class MeshLevel(nn.Module):
    """One refinement level: up-sample, add template and image features, attend, correct."""

    def __init__(
        self, upsample: Tensor, template: Tensor, in_width: int, width: int, fmap_channels: int,
        layers: int, heads: int, learned_blend: bool = False,
    ) -> None:
        super().__init__()
        self.blend = Blend(upsample, learned_blend)  # [n, n_prev]
        self.register_buffer("template", template.clone())  # [n, 3]
        self.reduce = nn.Linear(in_width, width)
        self.pos = nn.Linear(3, width)
        self.image = nn.Linear(fmap_channels, width)
        self.coords = nn.Linear(3, width)
        self.blocks = _transformer(width, layers, heads)
        self.norm = nn.LayerNorm(width)
        self.delta = nn.Linear(width, 3)
        nn.init.zeros_(self.delta.weight)
        nn.init.zeros_(self.delta.bias)

    def forward(self, x: Tensor, coords: Tensor, fmap: Tensor) -> tuple[Tensor, Tensor]:
        """Nodes ``[B, n_prev, w_prev]`` and 2.5D coords ``[B, n_prev, 3]`` → ``[B, n, w]``, ``[B, n, 3]``."""
        blend = self.blend()
        coords = blend @ coords  # [B, n, 3]
        # Up-sampling and the linear maps commute: reduce the width on the n_prev nodes, before
        # up-sampling to n, and add the biases once.
        x = blend @ F.linear(x, self.reduce.weight)  # [B, n, w]
        x = (
            x
            + sample_projected(fmap, coords[..., :2], self.image.weight)
            + self.coords(coords)
            + (self.pos(self.template) + self.reduce.bias + self.image.bias)
        )
        with attention_kernel(x.device, x.shape[1]):
            x = self.blocks(x)
        return x, coords + self.delta(self.norm(x))


class MeshRegressor(nn.Module):
    """Joints and the feature pyramid → vertices at every level of the hierarchy."""

    def __init__(self, hierarchy: MeshHierarchy, channels: list[int], cfg: MeshConfig) -> None:
        super().__init__()
        if len(cfg.widths) != len(hierarchy.sizes):
            raise ValueError(
                f"model.mesh.widths: {len(cfg.widths)} widths for {len(hierarchy.sizes)} levels"
            )
        c5 = channels[-1]
        w0 = cfg.widths[0]
        # Joint tokens: image features at the joints plus a 3D positional cue from the joints.
        self.joint_image = nn.Linear(c5, w0)
        self.joint_pos = nn.Linear(3, w0)
        self.joint_id = nn.Parameter(torch.zeros(hierarchy.upsample[0].shape[1], w0))
        # Pyramid levels from coarse (C5) to fine (C2), one per mesh level.
        fmap_channels = channels[::-1][: len(cfg.widths)]
        in_widths = (w0, *cfg.widths[:-1])
        self.levels = nn.ModuleList(
            MeshLevel(
                torch.as_tensor(up), torch.as_tensor(tpl), w_in, w, c, cfg.layers,
                max(1, w // cfg.head_dim), cfg.upsample == "learned",
            )
            for up, tpl, w_in, w, c in zip(
                hierarchy.upsample, hierarchy.templates, in_widths, cfg.widths, fmap_channels
            )
        )
        self.register_buffer("joint_regressor", torch.as_tensor(hierarchy.joint_regressor))
        # The full mesh's edges [E, 2], for the edge-length loss (none when the topology is unknown).
        self.register_buffer("edges", _edges(hierarchy.faces), persistent=False)

    def forward(self, pyramid: list[Tensor], joints25d: Tensor) -> list[Tensor]:
        """``[C2..C5]`` and joints ``[B, 21, 3]`` → 2.5D vertices per level ``[[B, n_l, 3]]``."""
        fmaps = pyramid[::-1]
        x = (
            self.joint_image(sample_features(fmaps[0], joints25d[..., :2]))
            + self.joint_pos(joints25d)
            + self.joint_id
        )  # [B, 21, w0]
        coords = joints25d
        out = []
        for level, fmap in zip(self.levels, fmaps):
            x, coords = level(x, coords, fmap)
            out.append(coords)
        return out


def _edges(faces: np.ndarray | None) -> Tensor:
    """The unique undirected edges ``[E, 2]`` of a triangle mesh ``[F, 3]`` (``[0, 2]`` without one)."""
    if faces is None:
        return torch.zeros(0, 2, dtype=torch.long)
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return torch.as_tensor(np.unique(np.sort(pairs, axis=1), axis=0), dtype=torch.long)
