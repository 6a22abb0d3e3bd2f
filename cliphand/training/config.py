"""Training configuration: one dataclass per phase, read from params.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field

from cliphand.config import ConfigError, positive

AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class LossWeights:
    """Weights of the loss terms (the paper names them but gives no values)."""

    joints: float = 1.0  # L1 on 2.5D joints from the heatmaps' soft-argmax
    heatmap: float = 0.1  # cross-entropy of the 1D heatmaps against Gaussian labels
    clip: float = 0.5  # per-axis contrastive pose-text loss, summed over x, y, z
    verts: float = 1.0  # L1 on 2.5D vertices, every mesh level
    mesh_joints: float = 1.0  # L1 on the joints regressed from the mesh


@dataclass
class TrainConfig:
    """One training phase (``pretrain`` or ``finetune``)."""

    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    workers: int = 1
    seed: int = 0
    amp: str = "none"
    device: str = "auto"
    checkpoint_every: int = 200  # optimiser steps between mid-epoch checkpoints
    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self, prefix: str) -> None:
        """Raise a ConfigError naming the first unusable key."""
        for name in ("epochs", "batch_size", "lr", "checkpoint_every"):
            positive(getattr(self, name), f"{prefix}.{name}")
        if self.batch_size < 2:
            raise ConfigError(f"{prefix}.batch_size: the contrastive loss needs >= 2, got {self.batch_size}")
        for name in ("weight_decay", "warmup_steps", "grad_clip", "workers", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{prefix}.{name}: must not be negative, got {getattr(self, name)}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"{prefix}.amp: one of {AMP_MODES}, got {self.amp!r}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"{prefix}.device: 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        for name, value in vars(self.loss).items():
            if value < 0:
                raise ConfigError(f"{prefix}.loss.{name}: must not be negative, got {value}")
