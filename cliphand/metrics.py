"""FreiHAND's official evaluation (lmb-freiburg/freihand, eval.py and eval_util.py), float64.

Inputs are in meters; errors are reported in millimeters, as papers do. What the official code does
and this module reproduces:

* Errors are per-point Euclidean distances in camera space, with no root alignment ("unaligned").
* "Aligned" (PA-) errors first map each prediction onto its ground truth with a similarity
  transform (`procrustes_align`), fitted separately to the joints and to the vertices.
* PCK counts a point as correct when its error is ``<=`` the threshold; the AUC is the trapezoid
  area under PCK over ``linspace(0, 0.05, 100)`` m divided by the range (so it lies in [0, 1]), per
  point and then averaged over points.
* F-scores compare the predicted and ground-truth vertex sets by nearest-neighbour distances, with a
  strict ``<`` at 5 and 15 mm, averaged over samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import cKDTree

from cliphand.skeleton import NUM_JOINTS, NUM_VERTS

AUC_THRESHOLDS_M = np.linspace(0.0, 0.05, 100)
FSCORE_THRESHOLDS_M = (0.005, 0.015)
# The official code adds this to both Frobenius norms, which keeps degenerate inputs finite.
_NORM_EPS = 1e-8


def procrustes_align(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Map `pred` [K, 3] onto `gt` [K, 3] as the official `align_w_scale`; returns the aligned pred.

    Both sets are centred and divided by their Frobenius norms (+1e-8); the orthogonal matrix comes
    from `scipy.linalg.orthogonal_procrustes` WITHOUT a determinant correction, so reflections are
    allowed, as in the official code. The scale is the sum of singular values; gt's norm and
    centroid are then restored. A degenerate prediction (all points equal, e.g. all zeros) gets
    scale 0 and is mapped to gt's centroid at every point.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.ndim != 2 or gt.shape[1] != 3:
        raise ValueError(f"gt must have shape (K, 3), got {gt.shape}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred must have gt's shape {gt.shape}, got {pred.shape}")
    gt_mean, pred_mean = gt.mean(0), pred.mean(0)
    gt_c, pred_c = gt - gt_mean, pred - pred_mean
    gt_norm = np.linalg.norm(gt_c) + _NORM_EPS
    pred_norm = np.linalg.norm(pred_c) + _NORM_EPS
    gt_c, pred_c = gt_c / gt_norm, pred_c / pred_norm
    rot, scale = orthogonal_procrustes(gt_c, pred_c)  # gt_c @ rot ≈ pred_c
    return (pred_c @ rot.T) * scale * gt_norm + gt_mean


def _nn_distances(gt_pts: np.ndarray, pred_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distances pred→gt [P] and gt→pred [G]."""
    pred_to_gt, _ = cKDTree(gt_pts).query(pred_pts)
    gt_to_pred, _ = cKDTree(pred_pts).query(gt_pts)
    return pred_to_gt, gt_to_pred


def _fscore_from_distances(
    pred_to_gt: np.ndarray, gt_to_pred: np.ndarray, threshold_m: float
) -> tuple[float, float, float]:
    precision = float(np.mean(pred_to_gt < threshold_m))
    recall = float(np.mean(gt_to_pred < threshold_m))
    f = 2.0 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return f, precision, recall


def fscore(
    gt_pts: np.ndarray, pred_pts: np.ndarray, threshold_m: float
) -> tuple[float, float, float]:
    """F-score of point sets [G, 3] and [P, 3] at `threshold_m` meters: (f, precision, recall).

    Precision is the fraction of predicted points whose nearest gt point is strictly closer than the
    threshold, recall the fraction of gt points whose nearest predicted point is; f = 2PR / (P + R),
    0 when P + R = 0. (The official code names the two fractions the other way round; f is
    symmetric in them.)
    """
    gt_pts = np.asarray(gt_pts, dtype=np.float64)
    pred_pts = np.asarray(pred_pts, dtype=np.float64)
    for name, pts in (("gt_pts", gt_pts), ("pred_pts", pred_pts)):
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
            raise ValueError(f"{name} must have shape (K, 3) with K > 0, got {pts.shape}")
    return _fscore_from_distances(*_nn_distances(gt_pts, pred_pts), threshold_m)


def _pck_curve(errors_m: np.ndarray) -> np.ndarray:
    """PCK (error <= threshold) at each AUC_THRESHOLDS_M, averaged over points. errors_m: [N, K].

    Every point has N errors, so the mean of the per-point PCK curves is the PCK of all N*K errors
    pooled, and by linearity of the trapezoid the mean of per-point AUCs is this curve's AUC.
    """
    pooled = np.sort(errors_m, axis=None)
    return np.searchsorted(pooled, AUC_THRESHOLDS_M, side="right") / pooled.size


def _auc(pck: np.ndarray) -> float:
    span = np.trapezoid(np.ones_like(AUC_THRESHOLDS_M), AUC_THRESHOLDS_M)
    return float(np.trapezoid(pck, AUC_THRESHOLDS_M) / span)


def _check_points(name: str, arr: Any, num_points: int, num_samples: int | None) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (num_points, 3) or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, {num_points}, 3) with N > 0, got {arr.shape}")
    if num_samples is not None and arr.shape[0] != num_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} samples, expected {num_samples} (shape {arr.shape})"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values (shape {arr.shape})")
    return arr


def _point_set_metrics(
    prefix: str, gt: np.ndarray, pred: np.ndarray
) -> tuple[dict[str, Any], np.ndarray]:
    """Unaligned and aligned errors of one kind of point set ("j" or "v"), and the aligned preds."""
    aligned = np.stack([procrustes_align(g, p) for g, p in zip(gt, pred)])  # [N, K, 3]
    err = np.linalg.norm(gt - pred, axis=-1)  # [N, K]
    err_aligned = np.linalg.norm(gt - aligned, axis=-1)  # [N, K]
    pck_aligned = _pck_curve(err_aligned)
    name = {"j": "mpjpe", "v": "mpvpe"}[prefix]
    out = {
        f"{name}_mm": float(err.mean() * 1000.0),
        f"pa_{name}_mm": float(err_aligned.mean() * 1000.0),
        f"auc_{prefix}": _auc(_pck_curve(err)),
        f"auc_{prefix}_aligned": _auc(pck_aligned),
        f"per_sample_pa_{name}_mm": (err_aligned.mean(1) * 1000.0).tolist(),
        f"pck_curve_{prefix}_aligned": {
            "thresholds_mm": (AUC_THRESHOLDS_M * 1000.0).tolist(),
            "pck": pck_aligned.tolist(),
        },
    }
    return out, aligned


def freihand_summary(
    gt_xyz: np.ndarray,
    gt_verts: np.ndarray | None,
    pred_xyz: np.ndarray,
    pred_verts: np.ndarray | None,
) -> dict[str, Any]:
    """All official FreiHAND metrics of N samples: joints [N, 21, 3], vertices [N, 778, 3], meters.

    Returns a JSON-ready dict (floats and lists): ``mpjpe_mm, pa_mpjpe_mm, auc_j, auc_j_aligned,
    per_sample_pa_mpjpe_mm`` (N values), ``pck_curve_j_aligned`` ({"thresholds_mm", "pck"}), and,
    when both vertex arrays are given, the same for vertices (``mpvpe_mm, pa_mpvpe_mm, auc_v,
    auc_v_aligned, per_sample_pa_mpvpe_mm, pck_curve_v_aligned``) plus the vertex F-scores ``f5,
    f15, f5_aligned, f15_aligned`` (means of per-sample F). Unaligned errors are in camera space
    without root alignment, as in the official code.
    """
    gt_xyz = _check_points("gt_xyz", gt_xyz, NUM_JOINTS, None)
    num = gt_xyz.shape[0]
    pred_xyz = _check_points("pred_xyz", pred_xyz, NUM_JOINTS, num)
    summary, _ = _point_set_metrics("j", gt_xyz, pred_xyz)
    if (gt_verts is None) != (pred_verts is None):
        raise ValueError("gt_verts and pred_verts must both be given or both be None")
    if gt_verts is None:
        return summary

    gt_verts = _check_points("gt_verts", gt_verts, NUM_VERTS, num)
    pred_verts = _check_points("pred_verts", pred_verts, NUM_VERTS, num)
    vert_metrics, verts_aligned = _point_set_metrics("v", gt_verts, pred_verts)
    summary.update(vert_metrics)

    scores = np.zeros((2, len(FSCORE_THRESHOLDS_M), num))  # [unaligned/aligned, threshold, N]
    for i in range(num):
        for a, pred in enumerate((pred_verts[i], verts_aligned[i])):
            dists = _nn_distances(gt_verts[i], pred)
            for t, threshold in enumerate(FSCORE_THRESHOLDS_M):
                scores[a, t, i] = _fscore_from_distances(*dists, threshold)[0]
    for t, threshold in enumerate(FSCORE_THRESHOLDS_M):
        mm = round(threshold * 1000)
        summary[f"f{mm}"] = float(scores[0, t].mean())
        summary[f"f{mm}_aligned"] = float(scores[1, t].mean())
    return summary


@dataclass(frozen=True)
class Metric:
    """One reported number: its key in ``freihand_summary``'s result, how a person reads it."""

    key: str
    label: str
    fmt: str  # a format spec, e.g. ".2f"
    higher_is_better: bool

    @property
    def heading(self) -> str:
        """The label with its direction, as the README's tables show it."""
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"

    def format(self, value: float) -> str:
        return format(value, self.fmt)


# The one list of reported metrics, in the order the README shows them: the evaluate stage writes
# these keys (``rr_mpjpe_mm`` comes from ``cliphand.evaluation.summary``), its table and the
# ablation table render them, validation logs a subset.
REPORTED: tuple[Metric, ...] = (
    Metric("pa_mpjpe_mm", "PA-MPJPE (mm)", ".2f", False),
    Metric("pa_mpvpe_mm", "PA-MPVPE (mm)", ".2f", False),
    Metric("rr_mpjpe_mm", "MPJPE, root-relative (true root) (mm)", ".1f", False),
    Metric("mpjpe_mm", "MPJPE, estimated root (mm)", ".1f", False),
    Metric("auc_j_aligned", "AUC joints, 0–50 mm", ".3f", True),
    Metric("auc_v_aligned", "AUC vertices, 0–50 mm", ".3f", True),
    Metric("f5_aligned", "F@5 mm", ".3f", True),
    Metric("f15_aligned", "F@15 mm", ".3f", True),
)
METRICS = {m.key: m for m in REPORTED}
VALIDATION_KEYS = ("pa_mpjpe_mm", "mpjpe_mm", "auc_j_aligned")  # logged per epoch (+ pa_mpvpe_mm with the mesh)


def reported(summary: dict[str, Any]) -> dict[str, float]:
    """The reported metrics of a ``freihand_summary`` result (those it has)."""
    return {m.key: float(summary[m.key]) for m in REPORTED if m.key in summary}
