"""Preprocessing: pose-wise split, intrinsics mapped to the resized image, hierarchy, Dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cliphand.camera import project
from cliphand.config import ConfigError, PreprocessConfig
from cliphand.data.dataset import HandDataset
from cliphand.data.freihand import FreiHAND
from cliphand.data.preprocess import preprocess
from cliphand.data.synthetic import generate
from cliphand.models.hierarchy import LEVELS, MeshHierarchy


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    generate(root / "raw", n_train=6, n_eval=3, image_size=128, seed=3, workers=1, progress=False)
    stats = preprocess(root / "raw", root / "proc", PreprocessConfig(image_size=64, val_fraction=0.34, workers=1))
    return root, stats


def test_split_by_pose_and_counts(processed):
    root, stats = processed
    assert (stats["train_images"], stats["val_images"], stats["eval_images"]) == (16, 2, 3)
    train, val = np.load(root / "proc" / "train.npz"), np.load(root / "proc" / "val.npz")
    assert not set(train["pose"]) & set(val["pose"])
    assert np.load(root / "proc" / "train_images.npy", mmap_mode="r").shape == (16, 64, 64, 3)


def test_intrinsics_follow_the_resize(processed):
    root, _ = processed
    reader = FreiHAND(root / "raw", "training")
    train = np.load(root / "proc" / "train.npz")
    i, pose = 3, int(train["pose"][3])
    uv_small = project(torch.from_numpy(train["xyz"][i])[None], torch.from_numpy(train["K"][i])[None])[0]
    uv_big = project(torch.tensor(reader.xyz[pose])[None], torch.tensor(reader.K[pose])[None])[0]
    np.testing.assert_allclose(uv_small.numpy(), (uv_big.numpy() + 0.5) * 0.5 - 0.5, atol=1e-9)


def test_hierarchy_and_joint_regressor(processed):
    root, stats = processed
    h = MeshHierarchy.load(root / "proc" / "hierarchy.npz")
    assert h.sizes == LEVELS and h.faces is not None
    assert stats["joint_regressor_source"] == "dataset" and stats["joint_regressor_error_mm"] < 0.01
    for coarse, fine in zip(h.indices[:-1], h.indices[1:]):
        assert set(coarse) <= set(fine)  # nested levels
    assert all(np.allclose(u.sum(1), 1, atol=1e-5) for u in h.upsample)


def test_dataset_items(processed):
    root, _ = processed
    ds = HandDataset(root / "proc", "train", depth_range=8.0)
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["joints25d"].shape == (21, 3) and item["verts25d"].shape == (778, 3)
    assert ((item["joints25d"] > 0) & (item["joints25d"] < 1)).all()
    assert len(item["prompts"]) == 3 and item["prompts"][0].startswith("Hand joints from left to right")


def test_missing_split_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.npz"):
        HandDataset(tmp_path, "train", depth_range=8.0)


def test_bad_preprocess_params():
    with pytest.raises(ConfigError, match=r"preprocess\.val_fraction"):
        PreprocessConfig(val_fraction=1.5).validate()
