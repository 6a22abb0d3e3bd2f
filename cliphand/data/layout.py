"""FreiHAND's on-disk layout, shared by the synthetic generator and the reader.

A dataset root holds, for each split (``training``, ``evaluation``)::

    <split>_xyz.json     [P][21][3]   joints, meters, camera space (x right, y down, z forward)
    <split>_verts.json   [P][778][3]  mesh vertices, meters, camera space
    <split>_K.json       [P][3][3]    camera intrinsics: uv = (K @ xyz) / z
    <split>_mano.json    [P][1][61]   MANO pose (48), shape (10), translation (3)
    <split>_scale.json   [P]          length of the middle MCP-PIP bone, meters
    <split>/rgb/%08d.jpg              P * V images
    <split>/mask/%08d.jpg             P masks (one per pose)

``P`` is the number of poses. The training split shows every pose over ``V = 4`` backgrounds:
image ``i = pose + P * version``. The evaluation split has one image per pose (``V = 1``).
"""

from __future__ import annotations

from pathlib import Path

SPLITS = ("training", "evaluation")

# The four backgrounds of FreiHAND's training images, in the order of the version index.
TRAINING_VERSIONS = ("gs", "hom", "sample", "auto")

FREIHAND_TRAIN_POSES = 32560
FREIHAND_EVAL_POSES = 3960
FREIHAND_IMAGE_SIZE = 224

ANNOTATIONS = ("xyz", "verts", "K", "mano", "scale")

# Files written by the synthetic generator only; FreiHAND itself has no faces or joint regressor
# (they come from MANO, which we cannot ship).
HAND_MODEL_FILE = "hand_model.npz"  # faces [F, 3] int32, joint_regressor [21, 778] float64


def annotation_path(root: Path, split: str, name: str) -> Path:
    """Path of one annotation file, e.g. ``root/training_xyz.json``."""
    return Path(root) / f"{split}_{name}.json"


def image_path(root: Path, split: str, index: int) -> Path:
    """Path of RGB image ``index`` of a split."""
    return Path(root) / split / "rgb" / f"{index:08d}.jpg"


def mask_path(root: Path, split: str, pose: int) -> Path:
    """Path of the mask of pose ``pose`` of a split."""
    return Path(root) / split / "mask" / f"{pose:08d}.jpg"


def num_versions(split: str) -> int:
    """Images per pose: 4 backgrounds for training, 1 for evaluation."""
    return len(TRAINING_VERSIONS) if split == "training" else 1
