"""The evaluate stage's comparisons: the strongest simple baselines, where the model's error comes
from, and how smooth its mesh is.

Baselines (one number each, never a flattering one):

* aligned metrics (PA-MPJPE, PA-MPVPE, AUC, F-scores): the **canonical mean hand**, the training
  hands averaged in the hand's own frame (generalised Procrustes over the joints), predicted for
  every image. Averaging in camera space instead blurs hands seen from every side into a line.
* root-relative MPJPE: the training set's mean root-relative hand in camera space (the best
  constant before any alignment), at the true root;
* MPJPE with an estimated root: that hand at the constant guess of where the hand is in the crop:
  the training roots' mean pixel, at the training hands' mean apparent size
  (``cliphand.codec.log_apparent_size``) given the image's intrinsics and hand scale, the inputs the
  model has too. (The training roots' mean camera-space position is a weaker constant: the crops'
  focal lengths and the hands' sizes vary.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
import torch

from cliphand import metrics
from cliphand.camera import project
from cliphand.codec import depth_from_log_size, log_apparent_size
from cliphand.data.dataset import HandDataset
from cliphand.meanhand import canonical_mean_hand


def root_relative_mpjpe_mm(gt: np.ndarray, pred: np.ndarray) -> float:
    """MPJPE with the predicted root moved onto the true one (mm): the pose without its position."""
    return float(np.linalg.norm((pred - pred[:, :1]) - (gt - gt[:, :1]), axis=-1).mean() * 1000.0)


def summary(gt_xyz: np.ndarray, gt_verts: np.ndarray, pred_xyz: np.ndarray, pred_verts: np.ndarray) -> dict[str, Any]:
    """FreiHAND's metrics (``metrics.freihand_summary``) plus the root-relative MPJPE."""
    out = metrics.freihand_summary(gt_xyz, gt_verts, pred_xyz, pred_verts)
    out["rr_mpjpe_mm"] = root_relative_mpjpe_mm(gt_xyz, pred_xyz)
    return out


ROOT_DEPTH_KEYS = ("root_depth_error_mm", "root_depth_abs_error_mm")


def baseline(train: dict[str, np.ndarray], gt_xyz: np.ndarray, gt_verts: np.ndarray, K: np.ndarray,
             scale: np.ndarray) -> dict[str, Any]:
    """The baselines' metrics on the evaluation split (see the module's docstring): aligned metrics and
    PCK curves of the canonical mean hand; the two MPJPEs of the camera-space mean hand, and the
    constant root's depth errors (``root_depth_errors``). ``train`` holds the training ``xyz``,
    ``verts``, ``K`` and ``scale``; ``K`` [N, 3, 3] and ``scale`` [N] are the evaluation images'."""
    n = len(gt_xyz)
    canon_j, canon_v = canonical_mean_hand(train["xyz"], train["verts"])
    roots = gt_xyz[:, :1]
    out = metrics.freihand_summary(gt_xyz, gt_verts, np.broadcast_to(canon_j, (n, *canon_j.shape)) + roots,
                                   np.broadcast_to(canon_v, (n, *canon_v.shape)) + roots)
    rel = train["xyz"] - train["xyz"][:, :1]
    cam_j = rel.mean(0)
    out["rr_mpjpe_mm"] = root_relative_mpjpe_mm(gt_xyz, roots + cam_j)
    train_K, train_scale, train_root = (torch.tensor(a, dtype=torch.float64) for a in (train["K"], train["scale"], train["xyz"][:, 0]))
    mean_pixel = project(train_root[:, None], train_K)[:, 0].mean(0)  # [2]
    mean_log_size = log_apparent_size(train_root[:, 2], train_K, train_scale).mean()
    K, scale = torch.tensor(K, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64)
    depth = depth_from_log_size(mean_log_size.expand(n), K, scale)  # [N]
    ray = torch.cat([mean_pixel, mean_pixel.new_ones(1)]) @ torch.linalg.inv(K).transpose(1, 2)  # [N, 3], unit depth
    root = (ray * depth[:, None]).numpy()  # [N, 3]
    out["mpjpe_mm"] = float(np.linalg.norm(root[:, None] + cam_j - gt_xyz, axis=-1).mean() * 1000.0)
    out.update(root_depth_errors(root[:, 2], gt_xyz[:, 0, 2]))
    return out


def root_depth_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The estimated root depths ``[N]`` minus the true ones (meters in, mm out): the signed mean
    (positive: too far) and the mean magnitude."""
    error = (pred - truth) * 1000.0
    return {"root_depth_error_mm": float(error.mean()), "root_depth_abs_error_mm": float(np.abs(error).mean())}


def error_sources(pred25d: np.ndarray, pred_xyz: np.ndarray, dataset: HandDataset) -> dict[str, float]:
    """Where the error comes from.

    ``pa_mpjpe_mm_uv_only``: PA-MPJPE of predicted u, v with the true relative depth;
    ``pa_mpjpe_mm_depth_only``: true u, v with the predicted relative depth, both placed at the true
    root depth, so absolute depth recovery plays no part; ``root_depth_error_mm``: the estimated
    root's depth minus the true one, signed mean (positive: too far), and its mean magnitude.
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
    return out | root_depth_errors(pred_xyz[:, 0, 2], dataset.ann["xyz"][:, 0, 2])


def laplacian_mm(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-vertex magnitude of the uniform mesh Laplacian (each vertex minus its neighbours' mean),
    in mm, ``[N, V]``: how far every vertex sticks out of its neighbourhood. A spike is a large value."""
    n = verts.shape[1]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    adjacency = scipy.sparse.coo_matrix((np.ones(len(edges)), edges.T), shape=(n, n)).tocsr()
    adjacency.data[:] = 1.0  # an edge shared by two faces counts once
    mean_of_neighbours = scipy.sparse.diags(1.0 / np.maximum(adjacency.sum(1).A1, 1)) @ adjacency
    flat = verts.transpose(1, 0, 2).reshape(n, -1)  # [V, N * 3]
    neighbours = (mean_of_neighbours @ flat).reshape(n, len(verts), 3).transpose(1, 0, 2)  # [N, V, 3]
    return np.linalg.norm(verts - neighbours, axis=-1) * 1000.0


def smoothness(pred_verts: np.ndarray, gt_verts: np.ndarray, faces: np.ndarray | None) -> dict[str, float]:
    """Mean Laplacian magnitude of the predicted and true meshes (mm) and their ratio (1: as smooth as
    the truth); empty without faces (FreiHAND ships none: MANO's are not redistributable)."""
    if faces is None:
        return {}
    pred, truth = laplacian_mm(pred_verts, faces).mean(), laplacian_mm(gt_verts, faces).mean()
    return {"model_laplacian_mm": float(pred), "truth_laplacian_mm": float(truth), "ratio": float(pred / truth)}
