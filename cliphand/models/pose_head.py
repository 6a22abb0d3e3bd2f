"""The pose head: 1D heatmaps per joint and axis, soft-argmax, and pose-aware features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cliphand.skeleton import NUM_JOINTS

AXES = ("x", "y", "z")


def heatmap_bins(image_size: int, stride: int = 8) -> tuple[int, int, int]:
    """Bins of the x, y and z heatmaps: one x/y bin per ``stride`` pixels, z at S/4.

    The paper's 32, 32 and 64 at 256 px is ``stride = 8``; the bins follow the input size.
    """
    return image_size // stride, image_size // stride, image_size // 4


def soft_argmax(heatmap: Tensor) -> Tensor:
    """Expected position in [0, 1] of normalised 1D heatmaps ``[..., bins]`` → ``[...]``.

    Bin ``i`` covers ``[i, i + 1) / bins``; its centre is ``(i + 0.5) / bins``. (The authors' code
    returns the expected bin index without dividing by the bin count.)
    """
    bins = heatmap.shape[-1]
    centres = (torch.arange(bins, device=heatmap.device, dtype=heatmap.dtype) + 0.5) / bins
    return (heatmap * centres).sum(-1)


class DepthMixer(nn.Module):
    """Self-attention across the 21 joint tokens before the z heatmap, so a joint's depth is read
    with its neighbours' in view (depth is relative: one joint's evidence alone is ambiguous).

    Each token is the joint's pooled depth feature, its identity embedding and its 2D position
    (the soft-argmax u, v); pre-norm Transformer layers, two heads of width 32 at ``dim = 64``.
    """

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        self.position = nn.Linear(2, dim)
        layer = nn.TransformerEncoderLayer(
            dim, max(1, dim // 32), 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens: Tensor, uv: Tensor) -> Tensor:
        """``[B, 21, D]`` tokens and ``[B, 21, 2]`` positions in [0, 1] → ``[B, 21, D]``."""
        return self.layers(tokens + self.position(uv.to(tokens.dtype)))


class PoseHead(nn.Module):
    """The feature pyramid → 1D heatmap logits per joint for x, y and z.

    The maps from ``stride`` (8: C3..C5, or 4: C2..C5) up are fused at that stride and refined by
    ``blocks`` residual blocks (context across the hand, so a joint is told from its neighbours),
    where each joint gets a 2D heatmap; its marginals over rows and columns are the x and y
    heatmaps (S/8 bins at stride 8: the paper's 32 at 256 px),
    so localisation stays a convolutional, translation-equivariant task that trains from scratch.
    The z heatmap (S/4 bins) is read from depth features pooled under the joint's 2D heatmap. No
    dense 3D volume is ever built: a few million multiply-adds per image beyond the fusion convs.
    With ``mixer_layers``, a ``DepthMixer`` lets the joints' depth tokens attend to each other first.
    """

    def __init__(
        self, channels: list[int], image_size: int, width: int = 128, joint_dim: int = 64, stride: int = 8,
        blocks: int = 1, mixer_layers: int = 0,
    ) -> None:
        super().__init__()
        if stride not in (4, 8):
            raise ValueError(f"model.heatmap_stride: 4 or 8, got {stride}")
        self.first = 0 if stride == 4 else 1  # the pyramid level (C2 = 0) the fusion starts from
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels[self.first :])
        self.fuse = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.refine = nn.ModuleList(
            nn.Sequential(*(m for _ in range(2) for m in (
                nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))))
            for _ in range(blocks)
        )
        self.heatmap2d = nn.Conv2d(width, NUM_JOINTS, 1)
        self.depth_features = nn.Conv2d(width, joint_dim, 1)
        self.joint_embed = nn.Parameter(torch.zeros(NUM_JOINTS, joint_dim))
        self.depth = nn.Sequential(
            nn.LayerNorm(joint_dim), nn.Linear(joint_dim, joint_dim), nn.GELU(),
            nn.Linear(joint_dim, heatmap_bins(image_size, stride)[2]),
        )
        self.mixer = DepthMixer(joint_dim, mixer_layers) if mixer_layers else None

    def forward(self, pyramid: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """``[C2..C5]`` → logits ``[[B, 21, Bx], [B, 21, By], [B, 21, Bz]]`` (x, y: log-probabilities)
        and the joints' 2D heatmaps ``[B, 21, By, Bx]`` (log-probabilities; x and y are their marginals)."""
        maps = pyramid[self.first :]
        size = maps[0].shape[-2:]
        x = self.lateral[0](maps[0])
        for lateral, c in zip(self.lateral[1:], maps[1:]):
            x = x + F.interpolate(lateral(c), size=size, mode="bilinear", align_corners=False)
        x = self.fuse(x)  # [B, W, S/stride, S/stride]
        for block in self.refine:
            x = x + block(x)
        # Heatmaps in fp32 under bf16 autocast: bf16's 8-bit mantissa would round the soft-argmax
        # to ~1/256 of the image and coarsen the joint loss's gradient (A/B Q3 against Q0).
        logp = self.heatmap2d(x).float().flatten(2).log_softmax(-1).unflatten(2, size)  # [B, 21, H, W]
        x_logits = logp.logsumexp(2)  # [B, 21, W]: marginal over rows
        y_logits = logp.logsumexp(3)  # [B, 21, H]: marginal over columns
        pooled = torch.einsum("bjhw,bchw->bjc", logp.exp(), self.depth_features(x))  # [B, 21, D]
        tokens = pooled + self.joint_embed  # [B, 21, D]
        if self.mixer is not None:
            uv = torch.stack([soft_argmax(x_logits.exp()), soft_argmax(y_logits.exp())], -1)  # [B, 21, 2]
            tokens = self.mixer(tokens, uv)
        z_logits = self.depth(tokens).float()  # [B, 21, Bz]
        return [x_logits, y_logits, z_logits], logp


class PoseFeatures(nn.Module):
    """Per axis, the 21 heatmaps flattened and projected to the joint embedding, L2-normalised."""

    def __init__(self, bins: tuple[int, int, int], embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(NUM_JOINTS * b, embed_dim) for b in bins)

    def forward(self, heatmaps: list[Tensor]) -> list[Tensor]:
        """``[[B, 21, B_a]] * 3`` → ``[[B, E]] * 3``."""
        return [F.normalize(p(h.flatten(1)), dim=-1) for p, h in zip(self.proj, heatmaps)]
