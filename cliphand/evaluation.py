"""The evaluate stage's comparisons: the mean-pose baseline and where the model's error comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cliphand import metrics
from cliphand.data.dataset import HandDataset


def mean_pose_baseline(train_npz: Path, gt_xyz: np.ndarray, gt_verts: np.ndarray) -> dict[str, Any]:
    """The training set's mean root-relative hand, placed at each ground-truth root."""
    train = np.load(train_npz)
    mean_j = (train["xyz"] - train["xyz"][:, :1]).mean(0)
    mean_v = (train["verts"] - train["xyz"][:, :1]).mean(0)
    roots = gt_xyz[:, :1]
    return metrics.freihand_summary(gt_xyz, gt_verts, roots + mean_j, roots + mean_v)


def error_sources(pred25d: np.ndarray, dataset: HandDataset) -> dict[str, float]:
    """PA-MPJPE with one part of the 2.5D prediction replaced by the truth: which part costs most.

    ``uv_only``: predicted u, v with true relative depth; ``depth_only``: true u, v with predicted
    depth; both with the true root depth, so absolute depth recovery plays no part.
    """
    gt25d = dataset.ann["joints25d"].astype(np.float64)
    K = torch.from_numpy(dataset.ann["K"]).double()
    scale = torch.from_numpy(dataset.ann["scale"]).double()
    root = torch.from_numpy(dataset.ann["xyz"][:, 0, 2]).double()
    out = {}
    for name, uv, depth in (("uv_only", pred25d, gt25d), ("depth_only", gt25d, pred25d)):
        mixed = torch.from_numpy(np.concatenate([uv[..., :2], depth[..., 2:]], axis=-1)).double()
        cam = dataset.codec.decode(mixed, root, K, scale).numpy()
        out[f"pa_mpjpe_mm_{name}"] = float(metrics.freihand_summary(dataset.ann["xyz"], None, cam, None)["pa_mpjpe_mm"])
    return out
