"""Training losses.

Contrastive pose–text alignment (CLIP-style, one per axis x/y/z):

* `clip_loss`: symmetric cross-entropy between pose and text features. Two samples of a batch
  often share the same prompt text (identical joint orderings, frequent for z), so with
  `prompt_ids` the targets are multi-positive: uniform over every column with the sample's text.
  Without duplicates this is exactly CLIP's loss.
* `gather_features`: under torch.distributed the loss runs over the features of all ranks, with
  gradients through the local ones only, scaled by the world size so that DDP's mean over ranks
  gives the full-batch gradient (the result of open_clip's ClipLoss with ``local_loss=False,
  gather_with_grad=True``, without its extra backward communication).
* `LogitScale`: the learnable temperature.
* `prompt_ids`: ids that are equal exactly for equal prompt texts, on every rank.

Supervised terms on 2.5D coordinates (``cliphand.codec``): `heatmap_loss`, `heatmap2d_loss`, `joint_loss`,
`bone_loss`, `vertex_loss` (every mesh level) and `mesh_joint_loss` (joints regressed from the mesh).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cliphand.codec import BONE_CHILDREN, BONE_PARENTS

# CLIP's initial temperature 0.07 (the authors' code starts at log(100)) and CLIP's cap of 100.
LOGIT_SCALE_INIT = 1.0 / 0.07
LOGIT_SCALE_MIN = 1.0
LOGIT_SCALE_MAX = 100.0


def _distributed_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` [B, ...] of all ranks in rank order → [world * B, ...].

    Identity when not distributed. Only this rank's slice keeps its autograd history; the others
    are constants. Every rank then computes the same full-batch loss, but each back-propagates
    through its own samples only and DDP averages the parameter gradients over ranks, so the local
    slice's gradient is multiplied by the world size: the average of the ranks' gradients is then
    the full-batch gradient (what an all-gather with gradients would give, summing every rank's
    gradient of this slice). Every rank must pass the same shape.
    """
    rank, world = _distributed_world()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = _ScaleGrad.apply(x, float(world)) if x.requires_grad else x
    return torch.cat(parts, dim=0)


def _text_hash(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def prompt_ids(prompts: Sequence[str]) -> torch.Tensor:
    """Int64 ids [B], equal for equal prompt texts.

    The id is a 64-bit BLAKE2b hash of the text, not an index into this batch, so ids agree across
    ranks and batches and can be gathered. Different texts collide with probability ~B²/2⁶⁵.
    """
    return torch.tensor([_text_hash(p) for p in prompts], dtype=torch.long)


def clip_loss(
    pose_feats: torch.Tensor,
    text_feats: torch.Tensor,
    logit_scale: torch.Tensor,
    prompt_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric CLIP loss (pose→text and text→pose cross-entropy, averaged), gathered over ranks.

    pose_feats, text_feats: [B, D], L2-normalised; logit_scale: scalar, already exponentiated and
    clamped. prompt_ids: [B] (equal ids ⇔ equal texts, see `prompt_ids`) or None. With ids, each
    row's target is uniform over the columns with its text, and likewise for columns; without
    them, or without duplicates, the targets are the diagonal as in CLIP.
    """
    if pose_feats.ndim != 2 or pose_feats.shape != text_feats.shape:
        raise ValueError(
            f"pose_feats and text_feats must both be [B, D], got {tuple(pose_feats.shape)} "
            f"and {tuple(text_feats.shape)}"
        )
    if prompt_ids is not None and prompt_ids.shape != pose_feats.shape[:1]:
        raise ValueError(
            f"prompt_ids must be [{pose_feats.shape[0]}], got {tuple(prompt_ids.shape)}"
        )

    pose = gather_features(pose_feats)  # [G, D], G = world * B
    text = gather_features(text_feats)  # [G, D]
    logits = logit_scale * pose @ text.T  # [G, G], rows: poses, columns: texts
    if prompt_ids is None:
        labels = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    ids = gather_features(prompt_ids.to(logits.device))  # [G]
    same = (ids[:, None] == ids[None, :]).to(logits.dtype)  # [G, G], symmetric
    targets = same / same.sum(dim=1, keepdim=True)  # symmetric too: serves rows and columns
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class LogitScale(nn.Module):
    """Learnable logit scale (inverse temperature) of one axis's contrastive loss.

    Stores the log-scale, initialised at log(1/0.07) as in CLIP (the authors' code uses log(100),
    which starts at the cap); `forward` returns exp(log-scale) clamped to [1, 100].
    """

    def __init__(self, init: float = LOGIT_SCALE_INIT) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> torch.Tensor:
        """The scale, a scalar tensor in [1, 100]."""
        return self.log_scale.exp().clamp(LOGIT_SCALE_MIN, LOGIT_SCALE_MAX)


# Supervised pose and mesh losses (2.5D coordinates, see ``cliphand.codec``).


def heatmap_labels(joints25d: torch.Tensor, bins: Sequence[int], sigma_bins: float) -> list[torch.Tensor]:
    """The 1D heatmaps ``[[B, 21, bins]] * 3`` of 2.5D joints ``[B, 21, 3]``: normalised Gaussians of
    ``sigma_bins`` bins around each coordinate (SimCC's label smoothing)."""
    labels = []
    for axis, n in enumerate(bins):
        centres = (torch.arange(n, device=joints25d.device, dtype=joints25d.dtype) + 0.5) / n
        g = torch.exp(-0.5 * ((centres - joints25d[..., axis, None]) * n / sigma_bins) ** 2)  # [B, 21, n]
        labels.append(g / g.sum(-1, keepdim=True).clamp_min(1e-12))
    return labels


def heatmap_loss(logits: list[torch.Tensor], labels: list[torch.Tensor]) -> torch.Tensor:
    """KL divergence from the labels (``heatmap_labels``) to the 1D heatmaps ``[[B, 21, bins]] * 3``
    (logits), so the heatmaps the pose features read stay sharp and unimodal. KL rather than
    cross-entropy so a perfect heatmap scores 0 (the labels' entropy is not a floor).
    """
    total = labels[0].new_zeros(())
    for logit, label in zip(logits, labels):
        kl = F.kl_div(logit.log_softmax(-1), label, reduction="none").sum(-1)  # [B, 21]
        total = total + kl.mean()
    return total / len(logits)


def heatmap2d_loss(logp2d: torch.Tensor, labels: list[torch.Tensor]) -> torch.Tensor:
    """KL divergence from the product of the x and y labels to the joints' 2D heatmaps
    ``[B, 21, By, Bx]`` (log-probabilities). The 1D terms are met by any 2D map with the right
    marginals, two places for one joint among them; this term asks for one peak, at the joint."""
    target = labels[1][..., :, None] * labels[0][..., None, :]  # [B, 21, By, Bx]
    return F.kl_div(logp2d.flatten(2), target.flatten(2), reduction="none").sum(-1).mean()


def joint_loss(pred25d: torch.Tensor, target25d: torch.Tensor) -> torch.Tensor:
    """L1 between 2.5D joints ``[B, 21, 3]``."""
    return F.l1_loss(pred25d, target25d)


def bone_loss(pred25d: torch.Tensor, target25d: torch.Tensor) -> torch.Tensor:
    """L1 between 2.5D bone vectors ``[B, 20, 3]`` (child minus parent, ``skeleton.BONES``): the
    articulation that PA-MPJPE measures, with the hand's place in the crop factored out."""
    parents, children = BONE_PARENTS.to(pred25d.device), BONE_CHILDREN.to(pred25d.device)

    def bones(j: torch.Tensor) -> torch.Tensor:
        return j[:, children] - j[:, parents]

    return F.l1_loss(bones(pred25d), bones(target25d))


def vertex_loss(levels: list[torch.Tensor], target25d: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
    """L1 of every mesh level ``[B, n_l, 3]`` against the target vertices it keeps, averaged."""
    return sum(F.l1_loss(pred, target25d[:, ix]) for pred, ix in zip(levels, indices)) / len(levels)


def edge_loss(verts25d: torch.Tensor, target25d: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """L1 between edge lengths ``[B, E]`` of the predicted and the true mesh: penalises spikes and
    crumpling that a per-vertex loss, blind to neighbours, lets through."""
    def lengths(v: torch.Tensor) -> torch.Tensor:
        return (v[:, edges[:, 0]] - v[:, edges[:, 1]]).norm(dim=-1)

    return F.l1_loss(lengths(verts25d), lengths(target25d))


def mesh_joint_loss(verts25d: torch.Tensor, joint_regressor: torch.Tensor, target25d: torch.Tensor) -> torch.Tensor:
    """L1 between the joints regressed from the mesh ``J @ V`` and the target joints.

    The regressor is linear in camera space; applied to 2.5D coordinates it is exact for depth
    and, for a hand far from the camera relative to its size, a close approximation for u, v.
    """
    return F.l1_loss(joint_regressor @ verts25d, target25d)
