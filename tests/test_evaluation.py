"""The fair evaluation: the canonical mean hand, root-relative errors, mesh smoothness, and the mesh
hierarchy built in the hand's own frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cliphand import evaluation
from cliphand.codec import Codec25D
from cliphand.data import handmodel
from cliphand.data.dataset import HandDataset
from cliphand.data.synthetic import make_pose
from cliphand.losses import edge_loss
from cliphand.meanhand import canonical_mean_hand
from cliphand.metrics import freihand_summary, procrustes_align
from cliphand.models.hierarchy import build_hierarchy
from cliphand.models.mesh_regressor import Blend


def _one_hand() -> tuple[np.ndarray, np.ndarray]:
    """A synthetic hand's joints [21, 3] and vertices [778, 3], meters."""
    annotation = make_pose(seed=0, split="training", pose=0, size=224).annotation
    return annotation.xyz, annotation.verts


def _spun(xyz: np.ndarray, verts: np.ndarray, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """``n`` copies of one hand, each turned a random way about its root and placed 0.5 m ahead."""
    rots = Rotation.random(n, random_state=1).as_matrix()  # [n, 3, 3]
    root = xyz[:1]
    turn = lambda pts: np.einsum("nij,kj->nki", rots, pts - root) + np.array([0.0, 0.0, 0.5])
    return turn(xyz), turn(verts)


def test_the_canonical_mean_of_one_hand_seen_every_way_is_that_hand():
    xyz, verts = _one_hand()
    spun_j, spun_v = _spun(xyz, verts)
    mean_j, mean_v = canonical_mean_hand(spun_j, spun_v)
    assert np.abs(procrustes_align(xyz, mean_j) - xyz).max() < 1e-6
    assert np.abs(procrustes_align(verts, mean_v) - verts).max() < 1e-6
    # The camera-space mean of the same hands is a blob: far from the hand even after alignment.
    blob = (spun_v - spun_j[:, :1]).mean(0)
    assert np.linalg.norm(procrustes_align(verts, blob) - verts, axis=-1).mean() > 0.005


def test_the_baseline_predicts_the_canonical_hand_for_aligned_metrics():
    xyz, verts = _one_hand()
    train_j, train_v = _spun(xyz, verts)
    gt_j, gt_v = _spun(xyz, verts, n=5)
    K = np.broadcast_to(np.array([[500.0, 0, 112], [0, 500.0, 112], [0, 0, 1]]), (40, 3, 3))
    train = {"xyz": train_j, "verts": train_v, "K": K, "scale": np.full(40, 0.04)}
    base = evaluation.baseline(train, gt_j, gt_v, K[:5], np.full(5, 0.04))
    assert base["pa_mpjpe_mm"] < 1e-3 and base["pa_mpvpe_mm"] < 1e-3  # the right hand, up to alignment
    assert base["rr_mpjpe_mm"] > 10  # the camera-space mean cannot know the rotation


def test_the_constant_root_is_where_hands_sit_in_the_crop_at_their_typical_size():
    """Crops of longer focal length show hands from farther away at the same size: the baseline's
    root follows the image's intrinsics, so where every hand sits at the same pixel and apparent
    size it is exact, while the training roots' mean camera position is off."""
    xyz, verts = _one_hand()
    scale = float(np.linalg.norm(xyz[9] - xyz[10]))

    def crops(focals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K = np.stack([np.array([[f, 0, 112], [0, f, 100], [0, 0, 1]]) for f in focals])
        shift = np.stack([[0.0, 0.0, f * scale / 25.0] for f in focals])[:, None] - xyz[:1]  # root on the axis
        return xyz + shift, verts + shift, K

    train_j, train_v, train_K = crops(np.linspace(400, 700, 30))
    gt_j, gt_v, K = crops(np.array([420.0, 520.0, 680.0]))
    train = {"xyz": train_j, "verts": train_v, "K": train_K, "scale": np.full(30, scale)}
    base = evaluation.baseline(train, gt_j, gt_v, K, np.full(3, scale))
    assert base["root_depth_abs_error_mm"] < 1e-6 and base["mpjpe_mm"] < 1e-6
    mean_root = train_j[:, 0].mean(0)
    assert np.abs(mean_root[2] - gt_j[:, 0, 2]).mean() > 0.05  # the camera-space constant: 5 cm off and more


def test_root_relative_mpjpe_ignores_the_position_only():
    xyz, _ = _one_hand()
    gt = xyz[None]
    assert evaluation.root_relative_mpjpe_mm(gt, gt + np.array([0.1, -0.2, 0.3])) < 1e-9
    bent = gt.copy()
    bent[0, 8] += [0.01, 0.0, 0.0]  # one fingertip 10 mm off
    assert abs(evaluation.root_relative_mpjpe_mm(gt, bent) - 10.0 / 21) < 1e-6
    assert freihand_summary(gt, None, gt + 0.05, None)["mpjpe_mm"] > 80  # the absolute one does not


def test_laplacian_finds_a_spike():
    xyz, verts = _one_hand()
    faces = handmodel.topology().faces
    spiky = verts.copy()
    spiky[100] += [0.0, 0.0, 0.02]
    smooth, spike = evaluation.laplacian_mm(verts[None], faces)[0], evaluation.laplacian_mm(spiky[None], faces)[0]
    assert spike[100] > 15 > smooth.max()
    s = evaluation.smoothness(spiky[None], verts[None], faces)
    assert s["ratio"] > 1 and evaluation.smoothness(verts[None], verts[None], None) == {}


def test_edge_loss_is_zero_for_the_truth_and_grows_with_a_spike():
    xyz, verts = _one_hand()
    faces = handmodel.topology().faces
    edges = torch.as_tensor(np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0))
    v = torch.as_tensor(verts)[None]
    spiky = v.clone()
    spiky[0, 100, 2] += 0.02
    assert edge_loss(v, v, edges) == 0 and edge_loss(spiky, v, edges) > 0


def test_the_hierarchy_is_built_on_the_hand_not_on_a_blurred_mean():
    xyz, verts = _one_hand()
    spun_j, spun_v = _spun(xyz, verts)
    scale = np.full(len(spun_j), 0.044)
    h = build_hierarchy(spun_v, spun_j, scale)
    full = h.templates[-1].astype(np.float64) * 0.044
    assert np.abs(procrustes_align(verts, full) - verts).max() < 1e-5
    # Each level's blend weights are convex: every finer node lies among its coarser neighbours.
    for up in h.upsample:
        assert np.allclose(up.sum(1), 1.0, atol=1e-5) and (up >= 0).all()


def test_a_learned_blend_stays_convex_after_training_steps():
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]])
    blend = Blend(weights, learned=True)
    assert torch.allclose(blend(), weights, atol=1e-6)
    opt = torch.optim.SGD(blend.parameters(), lr=10.0)
    for _ in range(5):
        opt.zero_grad()
        (blend() @ torch.randn(3, 2)).pow(2).sum().backward()
        opt.step()
    w = blend()
    assert torch.allclose(w.sum(1), torch.ones(2)) and (w[weights == 0] == 0).all()
    fixed = Blend(weights, learned=False)
    assert not list(fixed.parameters()) and torch.equal(fixed(), weights)


def test_the_2d_error_is_in_pixels_of_the_input_and_ignores_depth():
    true = np.random.default_rng(0).random((2, 21, 3))
    pred = true + np.array([3.0 / 96, 4.0 / 96, 0.3])  # 3 and 4 pixels on u and v, and a depth error
    codec = Codec25D(image_size=96, depth_range=3.5)
    assert codec.uv_error_px(pred, true) == pytest.approx(5.0)
    assert codec.uv_error_px(torch.from_numpy(pred), torch.from_numpy(true)) == pytest.approx(5.0)


def test_validation_reports_the_2d_error_of_the_pose_head(processed_hands):
    """The training history's ``val_uv_error_px`` is the network's mean u, v error in input pixels."""
    from conftest import tiny_config

    from cliphand.config import TrainConfig
    from cliphand.models.cliphand3d import CLIPHand3D
    from cliphand.models.hierarchy import MeshHierarchy
    from cliphand.outputs import dataset_outputs
    from cliphand.training.trainer import validate

    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), MeshHierarchy.load(processed_hands / "hierarchy.npz"))
    val = HandDataset(processed_hands, "val", 8.0)
    out = validate(model, val, TrainConfig(batch_size=4, amp="none"), torch.device("cpu"), with_mesh=False)
    joints25d = dataset_outputs(model, val, 4, torch.device("cpu"), with_mesh=False, with_text=False)["joints25d"]
    expected = np.linalg.norm((joints25d - val.ann["joints25d"])[..., :2], axis=-1).mean() * 64  # the tiny model's 64 px
    assert out["val_uv_error_px"] == pytest.approx(expected, rel=1e-6)
    assert 0.5 < out["val_uv_error_px"] < 64  # an untrained network: off, but inside the crop
