"""The benchmark stage's parts: timing, FLOPs, sizes, training steps, the loader and the README table."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config
from torch import nn

from cliphand import benchmark, devices
from cliphand.config import (
    MODEL_PARTS,
    BenchmarkConfig,
    ConfigError,
    Params,
    Speedups,
    TimingConfig,
    TrainConfig,
    from_dict,
)
from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.report import speed_block
from cliphand.training import distributed
from cliphand.training.trainer import TrainStep

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset(processed_hands):
    return HandDataset(processed_hands, "train", depth_range=8.0)


def test_time_calls_warms_up_then_times_the_functions_in_turn():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    times = benchmark.time_calls(fns, TimingConfig(warmup=2, reps=3), CPU)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3} and all(t >= 0 for t in times["a"])


def test_latency_and_rate_statistics():
    times = [0.010, 0.020, 0.030, 0.040, 0.100]
    stats = benchmark.latency(times)
    assert stats["median_ms"] == pytest.approx(30.0)
    assert stats["p90_ms"] == pytest.approx(76.0)  # numpy's linear interpolation
    assert benchmark.per_second(times, 32) == pytest.approx(32 / 0.030)


def test_flops_count_matmuls_and_the_transformer_fast_path():
    assert benchmark.flops_per_image(nn.Linear(10, 20), torch.rand(4, 10)) == 2 * 10 * 20
    n, w = 7, 16
    layer = nn.TransformerEncoderLayer(w, 2, dim_feedforward=2 * w, batch_first=True).eval()
    # q, k, v and out projections (4 w^2), the feed-forward (4 w^2), scores and mixing (2 n w), per token.
    expected = 2 * (n * 8 * w * w + 2 * n * n * w)
    assert benchmark.flops_per_image(layer, torch.rand(3, n, w)) == expected


@pytest.mark.parametrize("bf16_fast", [True, False])
def test_inference_speed_reports_each_step_and_consistent_ratios(hierarchy, monkeypatch, bf16_fast):
    """Where the CPU has no native bf16 kernels (AVX2 only), bf16 is left off and reported so."""
    monkeypatch.setattr(devices, "bf16_is_fast", lambda device: bf16_fast)
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(text=None), hierarchy)
    cfg = BenchmarkConfig(
        latency=TimingConfig(batch_size=1, warmup=0, reps=2), throughput=TimingConfig(batch_size=2, warmup=0, reps=1)
    )
    result = benchmark.inference_speed(model, CPU, Speedups(channels_last=True, bf16=True), cfg)
    on = ["inference_mode", "channels_last"] + ["bf16"] * bf16_fast
    assert list(result["steps_median_ms"]) == ["eager", *on]
    assert result["steps_median_ms"][on[-1]] == result["latency"]["optimised"]["median_ms"]
    assert result["speedups"] == {"inference_mode": True, "channels_last": True, "bf16": bf16_fast, "compile": False}
    lat, rate = result["latency"], result["images_per_s"]
    assert set(lat) == set(rate) == {"baseline", "optimised", "backbone_baseline", "backbone_optimised"}
    ratio = result["full_over_backbone"]
    assert ratio["latency"] == pytest.approx(lat["optimised"]["median_ms"] / lat["backbone_optimised"]["median_ms"])
    assert ratio["throughput"] == pytest.approx(rate["backbone_optimised"] / rate["optimised"])
    assert 0 < result["max_abs_diff_25d"] < 0.05


def test_sizes_come_from_params_and_presets_without_downloads():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert benchmark.size_params("default", raw).model.backbone.name == raw["model"]["backbone"]["name"]
    paper = benchmark.size_params("paper", raw)
    assert (paper.model.backbone.name, paper.model.image_size) == ("resnet50", 256)
    offline = paper.model.offline()
    assert offline.backbone.pretrained is None and offline.text.pretrained is None
    assert paper.model.backbone.pretrained == "timm"  # the original is left alone
    with pytest.raises(ConfigError, match=r"benchmark\.sizes: 'huge'.*presets/huge\.yaml"):
        benchmark.size_params("huge", raw)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"latency": {"reps": 0}}, r"benchmark\.latency\.reps: must be positive"),
        ({"train": {"batch_size": 1}}, r"benchmark\.train\.batch_size: the contrastive loss"),
        ({"sizes": ["paper", "paper"]}, r"benchmark\.sizes: need distinct"),
        ({"speedups": {"cpu": {"fp8": True}}}, r"benchmark\.speedups\.cpu\.fp8: unknown key"),
    ],
)
def test_bad_benchmark_params_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Params, {"benchmark": section}, "")


@pytest.mark.parametrize("phase", ["pretrain", "finetune"])
def test_a_training_step_trains_what_its_phase_trains(hierarchy, dataset, phase):
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy)
    mesh, head = copy.deepcopy(model.mesh.state_dict()), copy.deepcopy(model.pose_head.state_dict())
    batch = benchmark.training_batch(dataset, 4, 64, CPU)
    TrainStep(model, TrainConfig(batch_size=4), phase, CPU, distributed.current())([batch])
    changed = lambda before, after: any(not torch.equal(before[k], after[k]) for k in before)
    assert changed(head, model.pose_head.state_dict())
    assert changed(mesh, model.mesh.state_dict()) == (phase == "finetune")


def test_the_frozen_parts_stay_as_the_phase_found_them(hierarchy, dataset):
    """Fine-tuning's default freezes the backbone and pose head: their weights and BatchNorm statistics
    (eval mode) stay to the bit, the mesh regressor trains; freezing every part is a ConfigError."""
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(lifter_width=0), hierarchy)
    before = copy.deepcopy(model.state_dict())
    cfg = dataclasses.replace(Params().finetune, batch_size=4)
    assert cfg.frozen == ("backbone", "pose_head")
    step = TrainStep(model, cfg, "finetune", CPU, distributed.current())
    step([benchmark.training_batch(dataset, 4, 64, CPU)])
    after = model.state_dict()
    frozen = [k for k in before if k.startswith(("backbone.", "pose_head."))]
    assert any("running_mean" in k for k in frozen)
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("mesh."))
    with pytest.raises(ConfigError, match=r"finetune\.frozen: nothing left to train"):
        TrainStep(model, dataclasses.replace(cfg, frozen=MODEL_PARTS), "finetune", CPU, distributed.current())


def test_training_batch_is_resized_to_the_model(dataset):
    batch = benchmark.training_batch(dataset, 2, 96, CPU)
    assert batch["image"].shape == (2, 3, 96, 96) and len(batch["prompts"]) == 3
    with pytest.raises(ValueError, match="benchmark.train.batch_size"):
        benchmark.training_batch(dataset, len(dataset) + 1, 64, CPU)


def test_loader_speed(dataset):
    assert benchmark.loader_speed(dataset, batch_size=4, workers=0, batches=2) > 0
    with pytest.raises(ValueError, match="pretrain.batch_size"):
        benchmark.loader_speed(dataset, batch_size=len(dataset), workers=0, batches=2)


def test_speed_table_renders_every_size_device_and_step():
    table = speed_block(json.loads(SPEED_EXAMPLE))
    assert (
        "| paper (resnet50 at 256 px) | cpu | 25.0 M | 12.00 (10.00) | 80.0 / 90.0 ms | 40.0 / 44.0 ms | 2.00× | "
        "12.0 / 30.0 | 1.25× / 1.30×; 1.18× / 1.20× |"
    ) in table
    assert "| paper | cpu | 80.0 ms | 79.0 ms | 60.0 ms | 40.0 ms | off | 1.0e-03 |" in table
    assert "| paper | cpu | 3.0 / 2.0 | bf16 / bf16 |" in table
    assert "generation 158 images/s" in table and "900 samples/s" in table


SPEED_EXAMPLE = """{
  "torch": "2.x", "devices": {"cpu": "a CPU, 2 threads"}, "seconds": 60.0,
  "batch_sizes": {"latency": 1, "throughput": 32, "train": 8},
  "data": {"generation_images_per_s": 157.6, "loader_samples_per_s": 900.0, "loader_batch_size": 32, "loader_workers": 1},
  "sizes": {"paper": {
    "model": "resnet50 at 256 px", "params_m": {"total": 25.0}, "gflops_per_image": {"full": 12.0, "backbone": 10.0},
    "train_amp": {"cpu": {"pretrain": "bf16", "finetune": "bf16"}}, "train_images_per_s": {"cpu": {"pretrain": 3.0, "finetune": 2.0}},
    "inference": {"cpu": {
      "latency": {"baseline": {"median_ms": 80.0, "p90_ms": 90.0}, "optimised": {"median_ms": 40.0, "p90_ms": 44.0},
                  "backbone_baseline": {"median_ms": 64.0, "p90_ms": 70.0}, "backbone_optimised": {"median_ms": 34.0, "p90_ms": 36.0}},
      "images_per_s": {"baseline": 12.0, "optimised": 30.0, "backbone_baseline": 15.0, "backbone_optimised": 36.0},
      "steps_median_ms": {"eager": 80.0, "inference_mode": 79.0, "channels_last": 60.0, "bf16": 40.0},
      "speedup_over_baseline": 2.0, "max_abs_diff_25d": 0.001,
      "full_over_backbone": {"latency": 1.18, "throughput": 1.2, "baseline_latency": 1.25, "baseline_throughput": 1.3}
    }}
  }}
}"""
