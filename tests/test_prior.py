"""The pose prior: identity until fitted; fitted, it keeps what the network sees and drops what it
cannot, in the hand's own frame, and puts the hand back where the network placed it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from cliphand.config import ConfigError, ModelConfig
from cliphand.data.synthetic import make_pose
from cliphand.metrics import freihand_summary
from cliphand.models.prior import PosePrior


def _hands(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic hands (joints, vertices; meters), each posed its own way, seen from where it was drawn."""
    notes = [make_pose(seed=seed, split="training", pose=i, size=224).annotation for i in range(n)]
    return np.stack([a.xyz for a in notes]), np.stack([a.verts for a in notes])


@pytest.fixture(scope="module")
def data():
    train = _hands(60, seed=0)
    held = _hands(30, seed=1)
    return train, held


def _noisy(joints: np.ndarray, verts: np.ndarray, sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """What a network that sees nothing of the pose predicts: the hand plus independent per-point noise."""
    rng = np.random.default_rng(seed)
    return joints + rng.normal(0, sd, joints.shape), verts + rng.normal(0, sd, verts.shape)


def test_an_unfitted_prior_passes_hands_through(data):
    (joints, verts), _ = data
    prior = PosePrior(21, 778, 8)
    j, v = torch.from_numpy(joints).float(), torch.from_numpy(verts).float()
    out_j, out_v = prior(j, v)
    assert out_j is j and out_v is v


def test_fitted_on_noisy_predictions_it_beats_both_the_network_and_the_mean_hand(data):
    (train_j, train_v), (held_j, held_v) = data
    prior = PosePrior(21, 778, 16)
    report = prior.fit(train_j, train_v, _noisy(held_j[:15], held_v[:15], 0.006, 0), (held_j[:15], held_v[:15]))
    assert 0.0 <= report["prior_joints_weight_top3"] <= 1.0
    # Judged on hands the fit never saw.
    pred_j, pred_v = _noisy(held_j[15:], held_v[15:], 0.006, 1)
    out_j, out_v = (t.numpy() for t in prior(torch.from_numpy(pred_j).float(), torch.from_numpy(pred_v).float()))
    raw = freihand_summary(held_j[15:], held_v[15:], pred_j, pred_v)
    filtered = freihand_summary(held_j[15:], held_v[15:], out_j, out_v)
    zero = PosePrior(21, 778, 16)
    zero.load_state_dict(prior.state_dict())
    zero.joints.weights.zero_(), zero.verts.weights.zero_()  # weight 0 everywhere: the mean hand
    mean_j, mean_v = (t.numpy() for t in zero(torch.from_numpy(pred_j).float(), torch.from_numpy(pred_v).float()))
    mean = freihand_summary(held_j[15:], held_v[15:], mean_j, mean_v)
    for key in ("pa_mpjpe_mm", "pa_mpvpe_mm"):
        assert filtered[key] < 0.8 * raw[key], key
        assert filtered[key] < mean[key], key


def test_it_keeps_what_the_network_sees_exactly(data):
    (train_j, train_v), (held_j, held_v) = data
    prior = PosePrior(21, 778, 63)
    prior.fit(train_j, train_v, (held_j, held_v), (held_j, held_v))  # a perfect network
    assert prior.joints.weights[:10].min() > 0.99
    out_j, _ = prior(torch.from_numpy(held_j).float(), torch.from_numpy(held_v).float())
    assert np.abs(out_j.numpy() - held_j).max() < 1e-4  # all 63 directions of the joints, weight 1


def test_the_hand_stays_where_the_network_put_it(data):
    (train_j, train_v), (held_j, held_v) = data
    prior = PosePrior(21, 778, 16)
    prior.fit(train_j, train_v, _noisy(held_j, held_v, 0.006, 0), (held_j, held_v))
    j, v = _noisy(held_j[:5], held_v[:5], 0.006, 2)
    turn = Rotation.random(random_state=3).as_matrix()
    moved = lambda p: 1.3 * p @ turn.T + np.array([0.05, -0.02, 0.4])  # noqa: E731
    a_j, a_v = (t.double().numpy() for t in prior(torch.from_numpy(j).float(), torch.from_numpy(v).float()))
    b_j, b_v = (t.double().numpy() for t in prior(torch.from_numpy(moved(j)).float(), torch.from_numpy(moved(v)).float()))
    assert np.abs(moved(a_j) - b_j).max() < 1e-4 and np.abs(moved(a_v) - b_v).max() < 1e-4
    assert np.abs(a_j.mean(1) - j.mean(1)).max() < 1e-5  # same centroid


def test_prior_components_must_fit_the_joints():
    with pytest.raises(ConfigError, match="model.prior_components"):
        ModelConfig(prior_components=64).validate()
    ModelConfig(prior_components=0).validate()


def test_the_fitted_prior_travels_in_the_model_file_and_predict_applies_it(hierarchy, data, tmp_path):
    from conftest import tiny_config

    from cliphand.models.cliphand3d import CLIPHand3D
    from cliphand.models.io import load_model, save_model
    from cliphand.predict import Predictor

    (train_j, train_v), (held_j, held_v) = data
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy).eval()
    model.prior.fit(train_j, train_v, _noisy(held_j, held_v, 0.006, 0), (held_j, held_v))
    images = torch.rand(2, 3, 64, 64)
    K = torch.tensor([[[80.0, 0.0, 32.0], [0.0, 80.0, 32.0], [0.0, 0.0, 1.0]]]).repeat(2, 1, 1)
    scale = torch.full((2,), 0.044)
    with torch.inference_mode():
        out, bare = model(images, K, scale), model(images, K, scale, with_prior=False)
    assert (out.joints_cam - bare.joints_cam).abs().max() > 1e-3  # the prior moved the hand
    save_model(model, tmp_path / "model.pt")
    reloaded = load_model(tmp_path / "model.pt").eval()
    assert bool(reloaded.prior.fitted)
    joints, verts = Predictor.from_model(reloaded)(images, K, scale)
    np.testing.assert_allclose(joints.numpy(), out.joints_cam.numpy(), rtol=1e-4, atol=1e-5)  # float64 vs float32 lifting
    np.testing.assert_allclose(verts.numpy(), out.verts_cam.numpy(), rtol=1e-4, atol=1e-5)
