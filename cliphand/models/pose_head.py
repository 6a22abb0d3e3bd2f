"""The pose head: 1D heatmaps per joint and axis, soft-argmax, and pose-aware features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliphand.skeleton import NUM_JOINTS

AXES = ("x", "y", "z")


def heatmap_bins(image_size: int) -> tuple[int, int, int]:
    """Bins of the x, y and z heatmaps: the paper's 32, 32 and 64 at 256 px, following the input."""
    return image_size // 8, image_size // 8, image_size // 4


def soft_argmax(heatmap: Tensor) -> Tensor:
    """Expected position in [0, 1] of normalised 1D heatmaps ``[..., bins]`` → ``[...]``.

    Bin ``i`` covers ``[i, i + 1) / bins``; its centre is ``(i + 0.5) / bins``. (The authors' code
    returns the expected bin index without dividing by the bin count.)
    """
    bins = heatmap.shape[-1]
    centres = (torch.arange(bins, device=heatmap.device, dtype=heatmap.dtype) + 0.5) / bins
    return (heatmap * centres).sum(-1)


class PoseHead(nn.Module):
    """C4 and C5 → 1D heatmap logits per joint for x, y and z.

    The two deepest maps are fused at stride 16; a 1x1 conv gives each joint its own small
    feature map, which one linear layer per axis reads out into bins (a SimCC-style head: no
    dense 3D volumes, a few hundred thousand multiply-adds per joint).
    """

    def __init__(
        self, channels: list[int], image_size: int, width: int = 256, joint_dim: int = 16
    ) -> None:
        super().__init__()
        c4, c5 = channels[-2:]
        self.lateral4 = nn.Conv2d(c4, width, 1)
        self.lateral5 = nn.Conv2d(c5, width, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, NUM_JOINTS * joint_dim, 1),
        )
        side = image_size // 16
        self.readout = nn.ModuleList(
            nn.Linear(joint_dim * side * side, bins) for bins in heatmap_bins(image_size)
        )

    def forward(self, c4: Tensor, c5: Tensor) -> list[Tensor]:
        """Heatmap logits ``[[B, 21, Bx], [B, 21, By], [B, 21, Bz]]``."""
        x = self.lateral4(c4) + F.interpolate(self.lateral5(c5), size=c4.shape[-2:], mode="nearest")
        x = self.fuse(x)  # [B, 21 * D, S/16, S/16]
        x = x.flatten(2).unflatten(1, (NUM_JOINTS, -1)).flatten(2)  # [B, 21, D * (S/16)^2]
        return [head(x) for head in self.readout]


class PoseFeatures(nn.Module):
    """Per axis, the 21 heatmaps flattened and projected to the joint embedding, L2-normalised."""

    def __init__(self, bins: tuple[int, int, int], embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(NUM_JOINTS * b, embed_dim) for b in bins)

    def forward(self, heatmaps: list[Tensor]) -> list[Tensor]:
        """``[[B, 21, B_a]] * 3`` → ``[[B, E]] * 3``."""
        return [F.normalize(p(h.flatten(1)), dim=-1) for p, h in zip(self.proj, heatmaps)]
