"""Shared fixtures: tiny, seeded configurations so the suite runs in minutes on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliphand.data.preprocess import PreprocessConfig, preprocess
from cliphand.data.synthetic import generate
from cliphand.models.cliphand3d import ModelConfig
from cliphand.models.backbone import BackboneConfig
from cliphand.models.hierarchy import build_hierarchy
from cliphand.models.mesh_regressor import MeshConfig
from cliphand.text.encoder import TextConfig

torch.set_num_threads(2)


def random_hands(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint and vertex clouds shaped like hands in front of a camera (for shapes, not realism)."""
    rng = np.random.default_rng(seed)
    root = np.array([0.0, 0.0, 0.7]) + rng.normal(0, 0.03, (n, 1, 3))
    xyz = root + rng.normal(0, 0.04, (n, 21, 3))
    xyz[:, 0] = root[:, 0]
    verts = root + rng.normal(0, 0.05, (n, 778, 3))
    scale = np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=-1)
    return xyz, verts, scale


@pytest.fixture(scope="session")
def hierarchy():
    xyz, verts, scale = random_hands(16)
    return build_hierarchy(verts, xyz, scale)


@pytest.fixture(scope="session")
def processed_hands(tmp_path_factory):
    """A preprocessed synthetic set at 64 px: 24 training images (6 poses x 4 backgrounds), 3 validation."""
    root = tmp_path_factory.mktemp("hands")
    generate(root / "raw", n_train=9, n_eval=2, image_size=128, seed=7, workers=1, progress=False)
    preprocess(root / "raw", root / "processed", PreprocessConfig(image_size=64, val_fraction=0.34, workers=1))
    return root / "processed"


def tiny_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(
        image_size=64,
        embed_dim=64,
        pose_width=32,
        joint_dim=4,
        backbone=BackboneConfig(name="resnet18"),
        mesh=MeshConfig(widths=(32, 16, 16, 8), layers=1, head_dim=8),
        text=TextConfig(embed_dim=64, width=64, layers=1, heads=2, adapter_layers=1, adapter_heads=2),
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg
