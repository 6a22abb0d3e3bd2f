"""The depth lifter: identity until fitted and in training mode; fitted on hands alone, it reads
the joints' depths from their 2D skeleton, and the model built with it starts where it would without."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config

from cliphand.codec import Codec25D
from cliphand.config import ConfigError, ModelConfig
from cliphand.data.synthetic import make_pose
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.lifter import DepthLifter

CODEC = Codec25D(224, 3.5)


def _hands(n: int, seed: int) -> dict[str, np.ndarray]:
    notes = [make_pose(seed=seed, split="training", pose=i, size=224).annotation for i in range(n)]
    return {k: np.stack([getattr(a, k) for a in notes]) for k in ("xyz", "verts", "K", "scale")}


def _encoded(h: dict[str, np.ndarray]) -> torch.Tensor:
    t = {k: torch.from_numpy(np.asarray(v)).double() for k, v in h.items()}
    return CODEC.encode(t["xyz"], t["K"], t["scale"]).float()  # [N, 21, 3]


def test_an_unfitted_lifter_and_one_in_training_mode_pass_joints_through():
    joints = torch.rand(4, 21, 3)
    lifter = DepthLifter(3.5, width=32).eval()
    assert torch.equal(lifter(joints), joints)
    lifter.fitted.fill_(True)
    assert not torch.equal(lifter(joints), joints)
    assert torch.equal(lifter.train()(joints), joints)


def test_a_fitted_lifter_reads_the_depths_from_the_2d_skeleton():
    train, held = _hands(60, seed=0), _hands(30, seed=1)
    torch.manual_seed(0)
    lifter = DepthLifter(CODEC.depth_range, width=128)
    report = lifter.fit(train["xyz"], train["verts"], train["K"], train["scale"], np.zeros(21), CODEC,
                        steps=300, seed=0)
    truth = _encoded(held)
    with torch.no_grad():
        lifted = lifter.eval()(truth)
    assert torch.equal(lifted[..., :2], truth[..., :2])  # u, v untouched
    assert torch.equal(lifted[:, 0, 2], torch.full((30,), 0.5))  # the root at depth 0
    scales = 2 * CODEC.depth_range
    error = ((lifted[..., 2] - truth[..., 2]).abs().mean() * scales).item()
    flat = ((truth[..., 2] - 0.5).abs().mean() * scales).item()  # a hand seen flat: every depth the root's
    assert error < 0.5 * flat, (error, flat)
    assert report["lifter_train_error_scales"] < flat


def test_the_model_starts_from_the_same_weights_with_or_without_a_lifter(hierarchy):
    torch.manual_seed(3)
    with_lifter = CLIPHand3D(tiny_config(), hierarchy).eval()
    torch.manual_seed(3)
    without = CLIPHand3D(tiny_config(lifter_width=0), hierarchy).eval()
    assert with_lifter.lifter is not None and without.lifter is None
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = with_lifter(images), without(images)
    assert torch.equal(a.joints25d, b.joints25d) and torch.equal(a.verts25d[-1], b.verts25d[-1])


def test_lifter_sizes_are_checked():
    with pytest.raises(ConfigError, match="model.lifter_width"):
        ModelConfig(lifter_width=-1).validate()
    ModelConfig(lifter_width=0).validate()

