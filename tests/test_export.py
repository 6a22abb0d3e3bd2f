"""The inference fast paths and exports give the eager model's numbers; `cliphand export` writes them."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from torch import nn

from cliphand import devices
from cliphand.cli import main
from cliphand.config import Speedups
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.export import InferenceModel, export_model, load_exported, speed_up
from cliphand.models.io import save_model
from cliphand.models.mesh_regressor import MeshLevel, sample_features


@pytest.fixture(scope="module")
def model(hierarchy):
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy).eval()
    # The coordinate heads start at zero; random ones make the vertices depend on every layer.
    for level in model.mesh.levels:
        nn.init.normal_(level.delta.weight, std=0.1)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("fmap_size", [2, 16])  # fewer and more pixels than the 12 nodes
def test_mesh_level_equals_the_straightforward_formula(fmap_size):
    torch.manual_seed(0)
    n_prev, n, w_prev, w, channels = 5, 12, 16, 8, 24
    level = MeshLevel(torch.rand(n, n_prev), torch.randn(n, 3), w_prev, w, channels, layers=1, heads=2).eval()
    nn.init.normal_(level.delta.weight)
    x, coords = torch.randn(2, n_prev, w_prev), torch.rand(2, n_prev, 3)
    fmap = torch.randn(2, channels, fmap_size, fmap_size)
    up = level.blend() @ coords
    reference = level.blocks(
        level.reduce(level.blend() @ x) + level.pos(level.template)
        + level.image(sample_features(fmap, up[..., :2])) + level.coords(up)
    )
    out, out_coords = level(x, coords, fmap)
    assert torch.allclose(out, reference, atol=1e-5)
    assert torch.allclose(out_coords, up + level.delta(level.norm(reference)), atol=1e-5)


def test_fp32_fast_path_matches_eager_and_bf16_stays_close(model, images, monkeypatch):
    with torch.no_grad():
        eager = InferenceModel(model)(images)
    cpu = torch.device("cpu")
    fast = speed_up(InferenceModel(model), cpu, Speedups(channels_last=True, bf16=False))(images)
    assert fast.dtype == torch.float32 and fast.shape == (3, 21 + 778, 3)
    assert torch.allclose(fast, eager, atol=1e-5)
    # Where the CPU has no native bf16 kernels (AVX2 only) bf16 is left off: the float32 path.
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: False)
    net = InferenceModel(model)
    assert torch.allclose(speed_up(net, cpu, Speedups(channels_last=True, bf16=True))(images), eager, atol=1e-5)
    assert net.model.backbone.body.conv1.weight.dtype == torch.float32
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: True)  # as on an AVX-512 or AMX CPU
    net = InferenceModel(model)
    half = speed_up(net, cpu, Speedups(channels_last=True, bf16=True))(images)
    assert half.dtype == torch.float32
    # Weights cast once, up front, not by autocast on every call; normalisation stays float32.
    assert net.model.backbone.body.conv1.weight.dtype == net.model.mesh.levels[0].delta.weight.dtype == torch.bfloat16
    assert net.model.mesh.levels[0].norm.weight.dtype == torch.float32
    assert 0 < (half - eager).abs().max() < 0.05  # bfloat16 rounding, not another answer


@pytest.mark.parametrize("fmt", ["torchscript", "torch.export"])
def test_export_matches_eager_at_another_batch_size(model, images, tmp_path, fmt):
    path = export_model(model, tmp_path / "model.bin", fmt, example_batch=2)
    with torch.no_grad():
        expected = InferenceModel(model)(images)
        for batch in (images, images[:1]):
            assert torch.allclose(load_exported(path, fmt)(batch), expected[: len(batch)], atol=1e-5)
    assert not list(tmp_path.glob(".*.tmp"))


def test_export_errors_name_the_problem(model, tmp_path):
    with pytest.raises(ValueError, match="onnx"):
        export_model(model, tmp_path / "m.onnx", "onnx")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_exported(tmp_path / "nowhere.ts")


def test_cli_export_writes_a_loadable_model(model, images, tmp_path, capsys):
    save_model(model, tmp_path / "model.pt")
    out = tmp_path / "exported" / "model.ts"
    assert main(["export", str(tmp_path / "model.pt"), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    with torch.no_grad():
        assert torch.allclose(load_exported(out)(images), InferenceModel(model)(images), atol=1e-5)
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(out)]) == 1
