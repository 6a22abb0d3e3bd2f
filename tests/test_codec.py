"""The 2.5D convention: camera xyz → 2.5D targets → back is exact."""

import math
from unittest.mock import patch

import numpy as np
import torch

from cliphand.camera import project
from cliphand.codec import (
    MIN_DEPTH,
    Codec25D,
    depth_from_log_size,
    fit_root_prior,
    log_apparent_size,
)
from cliphand.skeleton import BONES

CODEC = Codec25D(224, 8.0)


def _posed_hands(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``n`` synthetic training hands: joints [n, 21, 3], K [n, 3, 3], scale [n]."""
    from cliphand.data.synthetic import make_pose

    poses = [make_pose(0, "training", i, 224).annotation for i in range(n)]
    return (torch.tensor(np.stack([p.xyz for p in poses])), torch.tensor(np.stack([p.K for p in poses])),
            torch.tensor([p.scale for p in poses], dtype=torch.float64))


def _hands(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randn(n, 21, 3, generator=g, dtype=torch.float64) * 0.04
    xyz = xyz + torch.tensor([0.0, 0.0, 0.7], dtype=torch.float64) + torch.randn(n, 1, 3, generator=g, dtype=torch.float64) * 0.05
    f = 400 + 200 * torch.rand(n, generator=g, dtype=torch.float64)
    K = torch.zeros(n, 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, 112.0, 110.0, 1.0
    scale = (xyz[:, 9] - xyz[:, 10]).norm(dim=-1)
    return xyz, K, scale


def test_round_trip_below_a_tenth_of_a_millimetre():
    xyz, K, scale = _hands(64)
    p = CODEC.encode(xyz, K, scale)
    root = CODEC.root_depth(p, K, scale)
    back = CODEC.decode(p, root, K, scale)
    assert (back - xyz).norm(dim=-1).max().item() < 1e-4
    # And in float32, as the model runs.
    p32, K32, s32 = p.float(), K.float(), scale.float()
    back32 = CODEC.decode(p32, CODEC.root_depth(p32, K32, s32), K32, s32)
    assert (back32.double() - xyz).norm(dim=-1).max().item() < 1e-4


def test_25d_is_normalised_crop_coordinates():
    xyz, K, scale = _hands(8)
    p = CODEC.encode(xyz, K, scale)
    uv = project(xyz, K)
    assert torch.allclose(p[..., :2] * 224 - 0.5, uv)
    assert torch.allclose(p[:, 0, 2], torch.full((8,), 0.5, dtype=torch.float64))  # the root is at depth 0
    expected = (xyz[..., 2] - xyz[:, :1, 2]) / scale[:, None] / 16 + 0.5
    assert torch.allclose(p[..., 2], expected)


def test_vertices_share_the_joints_root():
    xyz, K, scale = _hands(4)
    verts = xyz[:, :1] + torch.randn(4, 778, 3, dtype=torch.float64) * 0.03
    v25 = CODEC.encode_points(verts, xyz[:, 0, 2], K, scale)
    j25 = CODEC.encode(xyz, K, scale)
    root = CODEC.root_depth(j25, K, scale)
    np.testing.assert_allclose(CODEC.decode(v25, root, K, scale).numpy(), verts.numpy(), atol=1e-7)


def test_robust_root_depth_is_exact_for_exact_bones_and_resists_a_bad_bone():
    xyz, K, scale = _posed_hands(32)
    parents, children = torch.tensor(BONES).T
    lengths = (xyz[:, parents] - xyz[:, children]).norm(dim=-1)  # [B, 20]
    p = CODEC.encode(xyz, K, scale)
    # A hand with its own bone ratios: every bone agrees, so the fit is exact.
    for i in range(4):
        ratios = lengths[i] / scale[i]
        root = CODEC.root_depth_from_bones(p[i : i + 1], K[i : i + 1], scale[i : i + 1], ratios)
        assert abs(root.item() - xyz[i, 0, 2].item()) < 1e-9
    # With the mean ratios, and the scale bone's tip misplaced by 10 px: the scale bone alone
    # goes far wrong, the fit over all bones does not.
    ratios = (lengths / scale[:, None]).mean(0)
    noisy = p.clone()
    noisy[:, 10, :2] += 10 / 224
    truth = xyz[:, 0, 2]
    single = (CODEC.root_depth(noisy, K, scale) - truth).abs()
    robust = (CODEC.root_depth_from_bones(noisy, K, scale, ratios) - truth).abs()
    assert robust.median() < single.median() / 2 and robust.median() < 0.1 * truth.mean()


def test_robust_root_depth_is_the_least_squares_fit_of_the_bones():
    """Every joint's depth and position noisy (as a network's are): the root depth returned is
    where the bones' squared length errors are least, a millimetre nearer or farther costs more;
    the median of the bones' own roots, which it starts from, is not there."""
    xyz, K, scale = _posed_hands(32)
    parents, children = torch.tensor(BONES).T
    ratios = ((xyz[:, parents] - xyz[:, children]).norm(dim=-1) / scale[:, None]).mean(0)
    g = torch.Generator().manual_seed(0)
    noisy = CODEC.encode(xyz, K, scale) + torch.randn(32, 21, 3, generator=g, dtype=torch.float64) * torch.tensor(
        [2 / 224, 2 / 224, 0.25 / (2 * CODEC.depth_range)], dtype=torch.float64)  # 2 px; a quarter scale of depth

    def cost(root: torch.Tensor) -> torch.Tensor:  # [B]
        cam = CODEC.decode(noisy, root, K, scale)
        return (((cam[:, parents] - cam[:, children]).norm(dim=-1) - ratios * scale[:, None]) ** 2).sum(1)

    root = CODEC.root_depth_from_bones(noisy, K, scale, ratios)
    assert (cost(root) <= cost(root + 1e-3)).all() and (cost(root) <= cost(root - 1e-3)).all()
    with patch("cliphand.codec.GAUSS_NEWTON_STEPS", 0):
        median = CODEC.root_depth_from_bones(noisy, K, scale, ratios)
    assert ((cost(median) > cost(median + 1e-3)) | (cost(median) > cost(median - 1e-3))).float().mean() > 0.5


def test_bone_ratios_fitted_to_a_shrunken_skeleton_place_it_at_its_true_distance():
    """A model that draws every hand 20 % small about the wrist in the image reads, with the true
    bone ratios, as a hand 20 % too far; with the ratios fitted to its own skeletons at the true
    root it lands where the truth is."""
    xyz, K, scale = _posed_hands(48)
    parents, children = torch.tensor(BONES).T
    true_ratios = ((xyz[:, parents] - xyz[:, children]).norm(dim=-1) / scale[:, None]).mean(0)
    p = CODEC.encode(xyz, K, scale)
    np.testing.assert_allclose(  # the truth's own skeletons give back the truth's median ratios
        CODEC.fit_bone_ratios(p, K, scale, xyz[:, 0, 2]).numpy(),
        ((xyz[:, parents] - xyz[:, children]).norm(dim=-1) / scale[:, None]).median(0).values.numpy(), rtol=1e-9,
    )
    shrunk = p.clone()
    shrunk[..., :2] = p[:, :1, :2] + 0.8 * (p[..., :2] - p[:, :1, :2])
    fit, held_out = slice(0, 24), slice(24, 48)
    ratios = CODEC.fit_bone_ratios(shrunk[fit], K[fit], scale[fit], xyz[fit, 0, 2])
    truth = xyz[held_out, 0, 2]
    with_true = CODEC.root_depth_from_bones(shrunk[held_out], K[held_out], scale[held_out], true_ratios) / truth
    with_fitted = CODEC.root_depth_from_bones(shrunk[held_out], K[held_out], scale[held_out], ratios) / truth
    assert with_true.median() > 1.15  # too far
    assert abs(with_fitted.median() - 1) < 0.05


def test_log_apparent_size_round_trips_and_grows_as_the_hand_nears():
    _, K, scale = _hands(8)
    depth = torch.linspace(0.3, 1.5, 8, dtype=torch.float64)
    torch.testing.assert_close(depth_from_log_size(log_apparent_size(depth, K, scale), K, scale), depth)
    one_camera = log_apparent_size(depth, K[:1].expand(8, 3, 3), scale[:1].expand(8))
    assert (one_camera.diff() < 0).all()


def test_root_prior_pulls_noisy_distances_toward_the_typical_size_and_is_the_identity_at_weight_one():
    """Bones that read the distance with noise as large as the spread of the distances themselves:
    the fitted weight is well below one, and held-out roots land closer to the truth than as read."""
    xyz, K, scale = _hands(400, seed=3)
    g = torch.Generator().manual_seed(4)
    typical = math.log(500.0 * 0.03 / 0.7)
    truth = depth_from_log_size(typical + 0.2 * torch.randn(400, generator=g, dtype=torch.float64), K, scale)
    read = truth * torch.exp(0.2 * torch.randn(400, generator=g, dtype=torch.float64))
    prior = fit_root_prior(read[:200], truth[:200], K[:200], scale[:200], typical)
    assert prior[0] == typical and 0.3 < prior[1] < 0.7
    m, w = prior
    pulled = depth_from_log_size(m + w * (log_apparent_size(read, K, scale) - m), K, scale)
    assert (pulled[200:] - truth[200:]).abs().mean() < 0.85 * (read[200:] - truth[200:]).abs().mean()
    # lift applies it; at weight one it changes nothing
    p = CODEC.encode(xyz, K, scale)
    ratios = ((xyz[:, [p for p, _ in BONES]] - xyz[:, [c for _, c in BONES]]).norm(dim=-1) / scale[:, None]).mean(0)
    plain = CODEC.lift(p, K, scale, ratios)[0]
    torch.testing.assert_close(CODEC.lift(p, K, scale, ratios, root_prior=torch.tensor([typical, 1.0]))[0], plain)
    zero = CODEC.lift(p, K, scale, ratios, root_prior=torch.tensor([typical, 0.0]))[0]
    torch.testing.assert_close(zero[:, 0, 2], depth_from_log_size(torch.full((400,), typical, dtype=torch.float64), K, scale))


def test_root_prior_keeps_inconsistent_skeletons_finite():
    """Random 2.5D points: the bones of many imply a root at or behind the camera (read as
    MIN_DEPTH ahead of it), where the log apparent size has no value; the lifted hands stay finite,
    in front of the camera."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(500, 21, 3, generator=g, dtype=torch.float64)
    _, K, scale = _hands(500)
    ratios = torch.ones(20, dtype=torch.float64)
    assert (CODEC.root_depth_from_bones(p, K, scale, ratios) <= MIN_DEPTH).any()
    joints = CODEC.lift(p, K, scale, ratios, root_prior=torch.tensor([math.log(500 * 0.03 / 0.7), 0.2]))[0]
    assert torch.isfinite(joints).all() and (joints[:, 0, 2] + 8.0 * scale > 0).all()
