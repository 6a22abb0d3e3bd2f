"""CLIP-Hand3D: backbone → 1D-heatmap pose head → pose-aware features and coarse-to-fine mesh."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cliphand.codec import Codec25D
from cliphand.config import ConfigError, ModelConfig
from cliphand.losses import LogitScale
from cliphand.models.backbone import Backbone
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.models.lifter import DepthLifter
from cliphand.models.mesh_regressor import MeshRegressor
from cliphand.models.pose_head import PoseFeatures, PoseHead, heatmap_bins, soft_argmax
from cliphand.models.prior import PosePrior
from cliphand.skeleton import NUM_JOINTS, NUM_VERTS
from cliphand.text.encoder import TextEncoder

log = logging.getLogger(__name__)

# ImageNet statistics: timm's CNNs are trained with them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass
class HandOutput:
    """What the model predicts for a batch. 2.5D coordinates follow ``cliphand.codec``."""

    heatmaps: list[Tensor]  # x, y, z: [B, 21, bins], softmax over bins
    logits: list[Tensor]  # the same before the softmax
    heatmap2d: Tensor  # [B, 21, By, Bx] log-probabilities: x and y are its marginals
    joints25d: Tensor  # [B, 21, 3]
    verts25d: list[Tensor]  # per mesh level: [B, n_l, 3], the last is [B, 778, 3]
    pose_feats: list[Tensor]  # x, y, z: [B, E], L2-normalised
    joints_cam: Tensor | None = None  # [B, 21, 3], meters, when K and scale are given
    verts_cam: Tensor | None = None  # [B, 778, 3]


class CLIPHand3D(nn.Module):
    """The image side (backbone, pose head, pose features, mesh regressor) and the text side.

    ``forward`` takes images in [0, 1]; the text encoder and logit scales are used by the
    contrastive loss only (``encode_text``), so inference never runs them.
    """

    def __init__(self, cfg: ModelConfig, hierarchy: MeshHierarchy) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        try:
            hierarchy = hierarchy.subset(cfg.mesh.levels)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.hierarchy = hierarchy
        self.codec = Codec25D(cfg.image_size, cfg.depth_range)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        # The true bones' mean ratios, until the finetune stage fits them to the model's own skeletons.
        self.register_buffer("bone_ratios", torch.tensor(hierarchy.bone_ratios, dtype=torch.float32))  # a copy
        # The root prior (m, w) of ``Codec25D.lift``, fitted by the finetune stage; w = 1: as the bones read it.
        self.register_buffer("root_prior", torch.tensor([0.0, 1.0]))
        self.backbone = Backbone(cfg.backbone)
        bins = heatmap_bins(cfg.image_size, cfg.heatmap_stride)
        self.pose_head = PoseHead(
            self.backbone.channels, cfg.image_size, cfg.pose_width, cfg.joint_dim, cfg.heatmap_stride, cfg.pose_blocks,
            cfg.depth_mixer_layers,
        )
        self.pose_features = PoseFeatures(bins, cfg.embed_dim)
        self.mesh = MeshRegressor(hierarchy, self.backbone.channels, cfg.mesh)
        # Fitted by the finetune stage on the validation split; until then it passes hands through.
        self.prior = PosePrior(NUM_JOINTS, NUM_VERTS, cfg.prior_components)
        self.text = TextEncoder(cfg.text) if cfg.text is not None else None
        # One learnable temperature per axis.
        self.logit_scales = nn.ModuleList(LogitScale() for _ in range(3)) if cfg.text is not None else None
        # Fitted by the finetune stage after training; until then (and in training mode) the pose head's
        # depth. Built last, so the other modules start from the same draws with or without it.
        self.lifter = DepthLifter(cfg.depth_range, cfg.lifter_width) if cfg.lifter_width else None

    def forward(
        self, images: Tensor, K: Tensor | None = None, scale: Tensor | None = None, with_mesh: bool = True,
        with_prior: bool = True,
    ) -> HandOutput:
        """Images ``[B, 3, S, S]`` in [0, 1]; with the crop's ``K`` [B, 3, 3] and the hand's
        ``scale`` [B] (meters) the joints and vertices are also returned in camera space, through
        the pose prior unless ``with_prior=False`` (the network alone).
        ``with_mesh=False`` skips the mesh regressor (contrastive pretraining does not use it)."""
        pyramid = self.backbone((images - self.mean) / self.std)  # [C2, C3, C4, C5]
        logits, heatmap2d = self.pose_head(pyramid)
        heatmaps = [l.softmax(-1) for l in logits]
        joints25d = torch.stack([soft_argmax(h) for h in heatmaps], dim=-1)  # [B, 21, 3]
        if self.lifter is not None:
            joints25d = self.lifter(joints25d)
        verts25d = self.mesh(pyramid, joints25d) if with_mesh else []
        out = HandOutput(heatmaps, logits, heatmap2d, joints25d, verts25d, self.pose_features(heatmaps))
        if K is not None and scale is not None:
            out.joints_cam, *verts = self.codec.lift(joints25d, K, scale, self.bone_ratios, *verts25d[-1:],
                                                     root_prior=self.root_prior)
            out.verts_cam = verts[0] if verts else None
            if with_prior:
                out.joints_cam, out.verts_cam = self.prior(out.joints_cam, out.verts_cam)
        return out

    def encode_text(self, prompts: list[str], axis: int) -> Tensor:
        """Prompt embeddings ``[B, E]`` for one axis (0 = x, 1 = y, 2 = z), L2-normalised."""
        if self.text is None:
            raise RuntimeError("this model was built without a text encoder (model.text: null)")
        return self.text(prompts, axis)


def count_parameters(module: nn.Module) -> dict[str, int]:
    """Parameters per top-level child and in total (trainable or not)."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in module.named_children()}
    counts["total"] = sum(p.numel() for p in module.parameters())
    return counts
