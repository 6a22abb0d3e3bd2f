"""The benchmark stage's hot paths at a tiny size, under pytest-benchmark.

Skipped by the default run (``--benchmark-skip`` in pyproject.toml); run them with
``pytest tests/benchmarks --benchmark-only``. The sizes are the test suite's tiny model, so the
numbers compare code versions on one machine, not model sizes: ``metrics/speed.json`` has those.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_config

from cliphand.benchmark import loader_speed, training_batch
from cliphand.config import Speedups, TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.export import InferenceModel, speed_up
from cliphand.training import distributed
from cliphand.training.trainer import PHASES, TrainStep

CPU = torch.device("cpu")
FAST = Speedups(channels_last=True, bf16=True)


@pytest.fixture(scope="module")
def model(hierarchy):
    torch.manual_seed(0)
    return CLIPHand3D(tiny_config(), hierarchy)


@pytest.fixture(scope="module")
def dataset(processed_hands):
    return HandDataset(processed_hands, "train", depth_range=8.0)


def _eager(module):
    module = module.eval()

    def run(*inputs):
        with torch.no_grad():
            return module(*inputs)

    return run


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("path", ["eager", "optimised"])
def test_inference(benchmark, model, path, batch):
    run = _eager(InferenceModel(model)) if path == "eager" else speed_up(InferenceModel(model), CPU, FAST)
    images = torch.rand(batch, 3, 64, 64)
    out = benchmark(run, images)
    assert out.shape == (batch, 21 + 778, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("path", ["eager", "optimised"])
def test_backbone(benchmark, model, path):
    backbone = copy.deepcopy(model.backbone)
    run = _eager(backbone) if path == "eager" else speed_up(backbone, CPU, FAST)
    pyramid = benchmark(run, torch.rand(1, 3, 64, 64))
    assert [p.shape[-1] for p in pyramid] == [16, 8, 4, 2]


def test_pose_head(benchmark, model):
    with torch.no_grad():
        pyramid = model.backbone(torch.rand(8, 3, 64, 64))
    logits, heatmap2d = benchmark(_eager(model.pose_head), pyramid)
    assert [l.shape[1] for l in logits] == [21, 21, 21]
    assert heatmap2d.shape[:2] == (8, 21)


def test_mesh_regressor(benchmark, model):
    with torch.no_grad():
        pyramid = model.backbone(torch.rand(8, 3, 64, 64))
    verts = benchmark(_eager(model.mesh), pyramid, torch.rand(8, 21, 3))
    assert verts[-1].shape == (8, 778, 3)


@pytest.mark.parametrize("phase", PHASES)
def test_train_step(benchmark, model, dataset, phase):
    net = copy.deepcopy(model)
    batch = training_batch(dataset, 8, 64, CPU)
    before = net.pose_head.heatmap2d.weight.clone()
    benchmark(TrainStep(net, TrainConfig(batch_size=8), phase, CPU, distributed.current()), [batch])
    assert not torch.equal(before, net.pose_head.heatmap2d.weight)


def test_loader(benchmark, dataset):
    assert benchmark(loader_speed, dataset, 4, 0, 3) > 0
