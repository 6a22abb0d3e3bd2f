"""Known-answer tests for the FreiHAND metrics."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cliphand.metrics import (
    AUC_THRESHOLDS_M,
    freihand_summary,
    fscore,
    procrustes_align,
)

N = 6


def _hands(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hand-sized random point sets in camera space (m): joints [N, 21, 3], vertices [N, 778, 3]."""
    rng = np.random.default_rng(seed)
    centre = np.array([0.0, 0.0, 0.7])
    xyz = centre + 0.05 * rng.standard_normal((N, 21, 3))
    verts = centre + 0.05 * rng.standard_normal((N, 778, 3))
    return xyz, verts


def _similarity(pts: np.ndarray, seed: int, reflect: bool = False) -> np.ndarray:
    """Random rotation (optionally composed with a mirror), scale in [0.5, 2] and translation."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix()
    if reflect:
        rot = rot @ np.diag([-1.0, 1.0, 1.0])
    return rng.uniform(0.5, 2.0) * pts @ rot.T + rng.normal(0.0, 0.2, 3)


def _align_reference(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Independent fit: min ||s (pred - mean) Q + t - gt|| over orthogonal Q, by one SVD."""
    gt_c, pred_c = gt - gt.mean(0), pred - pred.mean(0)
    u, sing, vt = np.linalg.svd(pred_c.T @ gt_c)
    q = u @ vt
    s = sing.sum() / (pred_c**2).sum()
    return s * pred_c @ q + gt.mean(0)


def test_identity_is_perfect() -> None:
    xyz, verts = _hands()
    out = freihand_summary(xyz, verts, xyz.copy(), verts.copy())
    assert out["mpjpe_mm"] == 0.0 and out["mpvpe_mm"] == 0.0
    # The official +1e-8 on both norms leaves a few nanometers after alignment.
    assert out["pa_mpjpe_mm"] < 1e-4 and out["pa_mpvpe_mm"] < 1e-4
    for key in ("auc_j", "auc_v", "f5", "f15", "f5_aligned", "f15_aligned"):
        assert out[key] == pytest.approx(1.0)
    # Those nanometers miss the 0 mm threshold only: the trapezoid loses half the first cell.
    for key in ("auc_j_aligned", "auc_v_aligned"):
        assert out[key] == pytest.approx(1.0 - 0.5 / 99)
    assert len(out["per_sample_pa_mpjpe_mm"]) == N
    assert len(out["per_sample_pa_mpvpe_mm"]) == N
    curve = out["pck_curve_j_aligned"]
    assert curve["thresholds_mm"][0] == 0.0 and curve["thresholds_mm"][-1] == pytest.approx(50.0)
    assert curve["pck"][0] == 0.0 and np.allclose(curve["pck"][1:], 1.0)


def test_similarity_transform_vanishes_after_alignment_only() -> None:
    xyz, verts = _hands()
    pred_xyz = np.stack([_similarity(p, seed=i) for i, p in enumerate(xyz)])
    # Vertices get a different transform from joints: each set is aligned by its own fit.
    pred_verts = np.stack([_similarity(p, seed=100 + i) for i, p in enumerate(verts)])
    out = freihand_summary(xyz, verts, pred_xyz, pred_verts)
    assert out["pa_mpjpe_mm"] < 1e-4 and out["pa_mpvpe_mm"] < 1e-4
    assert out["auc_j_aligned"] == pytest.approx(1.0 - 0.5 / 99)
    assert out["f5_aligned"] == pytest.approx(1.0)
    assert out["mpjpe_mm"] > 10.0 and out["mpvpe_mm"] > 10.0
    assert out["auc_j"] < 0.9 and out["f5"] < 0.5


def test_reflection_is_aligned_away() -> None:
    xyz, _ = _hands()
    mirrored = _similarity(xyz[0], seed=3, reflect=True)
    assert np.allclose(procrustes_align(xyz[0], mirrored), xyz[0], atol=1e-9)


def test_matches_independent_svd_fit() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        gt = rng.standard_normal((21, 3))
        pred = rng.standard_normal((21, 3)) * rng.uniform(0.1, 3.0) + rng.standard_normal(3)
        assert np.allclose(procrustes_align(gt, pred), _align_reference(gt, pred), atol=1e-7)


def test_all_zero_prediction_maps_to_gt_centroid() -> None:
    """Documented behaviour: a degenerate prediction gets scale 0: every point at gt's centroid."""
    xyz, verts = _hands()
    aligned = procrustes_align(xyz[0], np.zeros((21, 3)))
    assert np.allclose(aligned, xyz[0].mean(0))
    out = freihand_summary(xyz, verts, np.zeros_like(xyz), np.zeros_like(verts))
    for key, value in out.items():
        values = value["pck"] if isinstance(value, dict) else value
        assert np.isfinite(np.asarray(values)).all(), key
    spread_mm = np.linalg.norm(xyz - xyz.mean(1, keepdims=True), axis=-1).mean() * 1000.0
    assert out["pa_mpjpe_mm"] == pytest.approx(spread_mm)
    assert out["mpjpe_mm"] == pytest.approx(np.linalg.norm(xyz, axis=-1).mean() * 1000.0)


def test_one_outlier_raises_mpjpe_by_its_share() -> None:
    xyz, _ = _hands()
    pred = xyz.copy()
    pred[2, 7] += np.array([0.0, 0.3, 0.4])  # 0.5 m off
    out = freihand_summary(xyz, None, pred, None)
    assert out["mpjpe_mm"] == pytest.approx(500.0 / (N * 21))
    assert "mpvpe_mm" not in out and "f5" not in out
    assert out["auc_j"] == pytest.approx(1.0 - 1.0 / (N * 21))


def test_fscore_strict_threshold_and_directions() -> None:
    # 1 m apart, so nearest neighbours are unambiguous.
    gt = np.array([[float(i), 0.0, 0.0] for i in range(10)])
    assert fscore(gt, gt, 0.25) == (1.0, 1.0, 1.0)

    pred = gt.copy()
    pred[3, 1] = 0.25  # exactly at the threshold: not counted either way
    assert fscore(gt, pred, 0.25) == pytest.approx((0.9, 0.9, 0.9))
    assert fscore(gt, pred, 0.2500001)[0] == 1.0

    # One extra, far predicted point: only precision drops.
    extra = np.vstack([gt, [[0.0, 50.0, 0.0]]])
    f, precision, recall = fscore(gt, extra, 0.25)
    assert precision == pytest.approx(10 / 11) and recall == 1.0
    assert f == pytest.approx(2 * (10 / 11) / (10 / 11 + 1))

    assert fscore(gt, gt + 10.0, 0.25) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("error_m", [0.0123, 0.031, 0.06])
def test_auc_of_constant_error(error_m: float) -> None:
    """PCK is a step at e; the trapezoid gives the area (0.05 - e)/0.05 plus up to half a cell."""
    xyz, _ = _hands()
    pred = xyz + np.array([0.0, 0.0, error_m])
    out = freihand_summary(xyz, None, pred, None)
    h = AUC_THRESHOLDS_M[1]
    k = int(np.searchsorted(AUC_THRESHOLDS_M, error_m))  # first threshold >= e
    last = len(AUC_THRESHOLDS_M) - 1
    expected = 0.0 if k > last else ((last - k) * h + h / 2) / 0.05
    assert out["auc_j"] == pytest.approx(expected)
    assert out["auc_j"] == pytest.approx(max(0.0, (0.05 - error_m) / 0.05), abs=h / 0.05)
    assert out["mpjpe_mm"] == pytest.approx(error_m * 1000.0)


def test_pooled_auc_equals_per_point_average() -> None:
    """The official code integrates each point's PCK curve separately and averages the AUCs."""
    xyz, _ = _hands()
    rng = np.random.default_rng(5)
    pred = xyz + rng.normal(0.0, 0.015, xyz.shape)
    out = freihand_summary(xyz, None, pred, None)
    err = np.linalg.norm(xyz - pred, axis=-1)
    per_point = [
        np.trapezoid([(err[:, k] <= t).mean() for t in AUC_THRESHOLDS_M], AUC_THRESHOLDS_M) / 0.05
        for k in range(21)
    ]
    assert out["auc_j"] == pytest.approx(np.mean(per_point))


def test_rejects_bad_shapes_and_values() -> None:
    xyz, verts = _hands()
    with pytest.raises(ValueError, match=r"pred_xyz.*\(6, 20, 3\)"):
        freihand_summary(xyz, None, xyz[:, :20], None)
    with pytest.raises(ValueError, match="gt_verts"):
        freihand_summary(xyz, verts[:, :100], xyz, verts)
    with pytest.raises(ValueError, match="pred_verts.*5 samples"):
        freihand_summary(xyz, verts, xyz, verts[:5])
    with pytest.raises(ValueError, match="both"):
        freihand_summary(xyz, verts, xyz, None)
    bad = xyz.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="pred_xyz.*non-finite"):
        freihand_summary(xyz, None, bad, None)
