"""Preprocessing: FreiHAND-layout data → compact arrays the training loop reads fast.

Per split, one memory-mapped ``<split>_images.npy`` (uint8 ``[N, S, S, 3]``, resized to the
model's input) and one ``<split>.npz`` of annotations with ``K`` already mapped to the resized
image, so an epoch reads two files instead of thousands of JPEGs. Train and val are split by
pose (all backgrounds of a pose stay on one side), so validation never sees a training hand.
The mesh hierarchy and joint regressor are computed here once (``hierarchy.npz``).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cliphand.config import PreprocessConfig
from cliphand.data.freihand import FreiHAND
from cliphand.files import atomic_path, check_free_space
from cliphand.models.hierarchy import build_hierarchy, joint_regressor_error_mm

log = logging.getLogger(__name__)

PROCESSED_SPLITS = ("train", "val", "eval")
# Per image: K, ids and joints in float64, and the 778-vertex mesh in float32 (about 9.9 KB).
ANNOTATION_BYTES = 10_000


def _resize(reader: FreiHAND, index: int, size: int) -> np.ndarray:
    image = reader[index].image
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image


def _needed_bytes(counts: tuple[int, ...], size: int) -> int:
    """What the splits' files take, about: the uint8 images (the bulk: ~25 GB at the paper's size)
    and each image's annotations (``ANNOTATION_BYTES``)."""
    return sum(counts) * (size * size * 3 + ANNOTATION_BYTES)


def _write_split(
    reader: FreiHAND, indices: np.ndarray, out_dir: Path, name: str, size: int, workers: int
) -> None:
    """Images and annotations of ``indices`` (image indices of ``reader``) → ``name`` files."""
    poses = np.asarray([reader.pose_of(int(i)) for i in indices], dtype=np.int64)
    height, width = reader[int(indices[0])].image.shape[:2] if len(indices) else (size, size)
    # Resizing by s maps pixel coordinates (centres at integers) as u' = s (u + 0.5) - 0.5.
    sx, sy = size / width, size / height
    resize = np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])
    ann = {
        "K": resize @ reader.K[poses],
        "scale": reader.scale[poses],
        "pose": poses,
        "version": np.asarray([reader.version_of(int(i)) for i in indices], dtype=np.int64),
        "index": indices.astype(np.int64),
    }
    if reader.xyz is not None:
        ann["xyz"] = reader.xyz[poses]
    if reader.verts is not None:
        ann["verts"] = reader.verts[poses].astype(np.float32)

    # Temp files beside the targets, removed on any failure (a half-written array can be gigabytes).
    with atomic_path(out_dir / f"{name}_images.npy") as tmp:
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(indices), size, size, 3))
        with ThreadPoolExecutor(workers) as pool:
            jobs = pool.map(lambda i: _resize(reader, int(i), size), indices)
            for k, image in enumerate(tqdm(jobs, total=len(indices), desc=f"preprocess {name}", unit="img")):
                images[k] = image
        images.flush()
        del images
    with atomic_path(out_dir / f"{name}.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **ann)


def preprocess(raw_root: Path, out_dir: Path, cfg: PreprocessConfig) -> dict:
    """Write train/val/eval arrays and the mesh hierarchy into ``out_dir``; return statistics."""
    cfg.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train = FreiHAND(raw_root, "training")
    evaluation = FreiHAND(raw_root, "evaluation")

    rng = np.random.default_rng(cfg.seed)
    n_val = int(round(cfg.val_fraction * train.num_poses))
    val_poses = np.sort(rng.permutation(train.num_poses)[:n_val])
    is_val = np.zeros(train.num_poses, dtype=bool)
    is_val[val_poses] = True
    all_images = np.arange(len(train))
    pose_of_image = np.asarray([train.pose_of(int(i)) for i in all_images])
    # Validation keeps one background per pose (the first), as the evaluation split has.
    val_images = all_images[is_val[pose_of_image] & (all_images < train.num_poses)]
    train_images = all_images[~is_val[pose_of_image]]
    counts = (len(train_images), len(val_images), len(evaluation))
    check_free_space(out_dir, _needed_bytes(counts, cfg.image_size), f"the processed arrays of {sum(counts)} images")

    _write_split(train, train_images, out_dir, "train", cfg.image_size, cfg.workers)
    _write_split(train, val_images, out_dir, "val", cfg.image_size, cfg.workers)
    _write_split(evaluation, np.arange(len(evaluation)), out_dir, "eval", cfg.image_size, cfg.workers)

    train_poses = np.flatnonzero(~is_val)
    verts, xyz, scale = train.verts[train_poses], train.xyz[train_poses], train.scale[train_poses]
    given = train.joint_regressor
    hierarchy = build_hierarchy(verts, xyz, scale, joint_regressor=given, faces=train.faces)
    hierarchy.save(out_dir / "hierarchy.npz")
    stats = {
        "train_images": len(train_images),
        "val_images": len(val_images),
        "eval_images": len(evaluation),
        "image_size": cfg.image_size,
        "joint_regressor_source": "dataset" if given is not None else "least_squares",
        "joint_regressor_error_mm": joint_regressor_error_mm(hierarchy.joint_regressor, verts, xyz),
    }
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    log.info("preprocess: %s", stats)
    return stats
