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
    """One training phase (``pretrain`` or ``finetune``).

    ``batch_size`` is the global batch of one optimiser step: it is split over the processes
    (``train.nproc``) and then over ``grad_accum`` micro-batches per process, so changing either
    leaves the optimisation unchanged except for what is computed over one micro-batch: the
    contrastive loss's negatives are the ``batch_size / grad_accum`` samples of a micro-batch
    gathered over every process, and BatchNorm's statistics come from ``batch_size / grad_accum``
    samples on CUDA (SyncBatchNorm) but from one process's micro-batch on CPU.
    """

    epochs: int = 4
    batch_size: int = 32
    grad_accum: int = 1  # micro-batches accumulated into one optimiser step
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
        for name in ("epochs", "batch_size", "grad_accum", "lr", "checkpoint_every"):
            positive(getattr(self, name), f"{prefix}.{name}")
        self.micro_batch(1, prefix)
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

    def micro_batch(self, world_size: int, prefix: str) -> int:
        """Samples per process and micro-batch; a ConfigError unless ``batch_size`` splits evenly."""
        parts = world_size * self.grad_accum
        if self.batch_size % parts:
            raise ConfigError(
                f"{prefix}.batch_size: {self.batch_size} does not split into {world_size} process(es) "
                f"x {self.grad_accum} micro-batch(es) (grad_accum)"
            )
        if self.batch_size // self.grad_accum < 2:
            raise ConfigError(
                f"{prefix}.batch_size: the contrastive loss needs >= 2 samples per micro-batch over all "
                f"processes, got {self.batch_size} / grad_accum {self.grad_accum}"
            )
        return self.batch_size // parts


@dataclass
class LaunchConfig:
    """How the training stages run: ``nproc`` processes on this machine (torchrun, DDP)."""

    nproc: int = 1

    def validate(self, prefix: str) -> None:
        """Raise a ConfigError naming ``nproc`` unless it is positive."""
        positive(self.nproc, f"{prefix}.nproc")
