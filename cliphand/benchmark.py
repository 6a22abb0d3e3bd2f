"""Speed of the hot paths, timed for the ``benchmark`` stage: inference, training steps, the data loader.

Per model size (``default``: params.yaml's model; any other name: ``presets/<name>.yaml`` merged
in, e.g. ``paper``: ResNet-50 at 256 px) and per device (the CPU always, the GPU when present):

* inference, image → 21 joints + 778 vertices (``InferenceModel``): latency at batch 1 (median,
  p90) and images/s at a larger batch, for a plain eager fp32 baseline (``torch.no_grad``, NCHW),
  for the optimised path (``speed_up`` with the configured speed-ups), and for the bare timm
  backbone both ways, so the cost of everything after the backbone shows as a ratio; the batch-1
  latency after each speed-up, added one at a time; and how far the optimised outputs stray;
* training: images/s of an optimiser step of pretraining and of fine-tuning: the trainer's own
  ``TrainStep`` (same losses, AMP, clipping and optimiser);
* parameters and FLOPs per image (``torch.utils.flop_counter``, 2 FLOPs per multiply-add).

Weights do not change speed, so models are built from config with random weights and nothing is
downloaded. Once per run: the loader's samples/s over the preprocessed training split with the
configured batch size and workers, and the synthetic generation rate, read from ``metrics/data.json``.
"""

from __future__ import annotations

import copy
import functools
import logging
import platform
import statistics
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, default_collate
from torch.utils.flop_counter import FlopCounterMode

from cliphand.config import (
    BenchmarkConfig,
    ConfigError,
    Params,
    Speedups,
    TimingConfig,
    from_dict,
    merged_params,
)
from cliphand.data.dataset import HandDataset
from cliphand.devices import resolve_amp, usable_speedups
from cliphand.models.cliphand3d import CLIPHand3D, count_parameters
from cliphand.models.export import InferenceModel, speed_up
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.training import distributed
from cliphand.training.trainer import PHASES, TrainStep

log = logging.getLogger(__name__)

# The speed-ups in the order they are added on top of the eager baseline.
STEPS = ("inference_mode", "channels_last", "bf16", "compile")


def time_calls(
    calls: dict[str, Callable[[], object]], timing: TimingConfig, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each of ``timing.reps`` calls of every function, after ``timing.warmup`` untimed ones.

    The functions take turns, so a change in the machine's load falls on all of them alike and
    their ratios stay fair. On a GPU every timed call ends with a synchronisation.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in calls.values():
        for _ in range(timing.warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(timing.reps):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def latency(times: list[float]) -> dict[str, float]:
    """Median and 90th percentile in milliseconds."""
    return {"median_ms": statistics.median(times) * 1e3, "p90_ms": float(np.percentile(times, 90)) * 1e3}


def per_second(times: list[float], batch_size: int) -> float:
    """Items per second at the median call time."""
    return batch_size / statistics.median(times)


def eager(module: nn.Module, device: torch.device) -> Callable[[Tensor], Tensor]:
    """The straightforward way to run ``module``: eval mode, ``no_grad``, fp32, NCHW."""
    module = module.eval().to(device)

    def run(images: Tensor) -> Tensor:
        with torch.no_grad():
            return module(images)

    return run


def flops_per_image(module: nn.Module, images: Tensor) -> float:
    """FLOPs of one forward pass per image, as ``torch.utils.flop_counter`` counts them.

    With gradients on and attention in its plain math form: the fused inference kernels (the
    transformer layers' fast path, CPU flash attention) are invisible to the counter.
    """
    with FlopCounterMode(display=False) as counter, torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        module.eval()(images)
    return counter.get_total_flops() / images.shape[0]


def inference_speed(
    model: CLIPHand3D, device: torch.device, speedups: Speedups, cfg: BenchmarkConfig
) -> dict:
    """Latency, throughput and the full/backbone ratio of the eager and the optimised paths."""
    speedups = usable_speedups(speedups, device)  # those that apply here, as reported
    size = model.cfg.image_size
    generator = torch.Generator().manual_seed(0)
    one = torch.rand(cfg.latency.batch_size, 3, size, size, generator=generator).to(device)
    many = torch.rand(cfg.throughput.batch_size, 3, size, size, generator=generator).to(device)
    full, backbone = InferenceModel(model), copy.deepcopy(model.backbone)
    paths = {
        "baseline": eager(full, device),
        "backbone_baseline": eager(backbone, device),
        "optimised": speed_up(copy.deepcopy(full), device, speedups),
        "backbone_optimised": speed_up(copy.deepcopy(backbone), device, speedups),
    }
    # Each speed-up on top of the ones before it; the last one on is the optimised path itself.
    on = [s for s in STEPS if s == "inference_mode" or getattr(speedups, s)]
    partial = {
        step: speed_up(copy.deepcopy(full), device, Speedups(**{s: s in on[: i + 1] for s in STEPS[1:]}))
        for i, step in enumerate(on[:-1])
    }
    times = time_calls({name: functools.partial(run, one) for name, run in {**paths, **partial}.items()}, cfg.latency, device)
    lat = {name: latency(times[name]) for name in paths}
    batch_times = time_calls({name: functools.partial(run, many) for name, run in paths.items()}, cfg.throughput, device)
    rate = {name: per_second(t, len(many)) for name, t in batch_times.items()}
    steps = {"eager": lat["baseline"]["median_ms"], **{step: latency(times[step])["median_ms"] for step in partial}}
    steps[on[-1]] = lat["optimised"]["median_ms"]
    diff = (paths["optimised"](one) - paths["baseline"](one)).abs().max()
    return {
        "speedups": {"inference_mode": True, **{s: getattr(speedups, s) for s in STEPS[1:]}},
        "latency": lat,
        "images_per_s": rate,
        "steps_median_ms": steps,
        "speedup_over_baseline": lat["baseline"]["median_ms"] / lat["optimised"]["median_ms"],
        "full_over_backbone": {
            "latency": lat["optimised"]["median_ms"] / lat["backbone_optimised"]["median_ms"],
            "throughput": rate["backbone_optimised"] / rate["optimised"],
            "baseline_latency": lat["baseline"]["median_ms"] / lat["backbone_baseline"]["median_ms"],
            "baseline_throughput": rate["backbone_baseline"] / rate["baseline"],
        },
        "max_abs_diff_25d": float(diff),
    }


def training_batch(dataset: HandDataset, batch_size: int, image_size: int, device: torch.device) -> dict:
    """The first ``batch_size`` training samples as the loader collates them, images resized."""
    if len(dataset) < batch_size:
        raise ValueError(f"benchmark.train.batch_size: {batch_size} exceeds the {len(dataset)} training samples")
    batch = default_collate([dataset[i] for i in range(batch_size)])
    if batch["image"].shape[-1] != image_size:
        batch["image"] = F.interpolate(batch["image"], size=image_size, mode="bilinear", align_corners=False)
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def train_speed(
    params: Params, model: CLIPHand3D, dataset: HandDataset, device: torch.device, timing: TimingConfig
) -> dict[str, float]:
    """Images/s of a pretraining and of a fine-tuning step of (a copy of) ``model``.

    Every step sees the same batch, so a frozen text tower's cache is warm, as from the second
    epoch on.
    """
    batch = training_batch(dataset, timing.batch_size, model.cfg.image_size, device)
    out = {}
    for phase in PHASES:
        step = TrainStep(copy.deepcopy(model), getattr(params, phase), phase, device, distributed.current())
        out[phase] = per_second(time_calls({phase: functools.partial(step, [batch])}, timing, device)[phase], timing.batch_size)
    return out


def loader_speed(dataset: HandDataset, batch_size: int, workers: int, batches: int) -> float:
    """Samples/s the training loader delivers once its workers run (the first batch is not timed)."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )
    if len(loader) < 2:
        raise ValueError(f"pretrain.batch_size: {batch_size} leaves fewer than 2 batches to time the loader")
    batches = iter(islice(loader, min(batches, len(loader) - 1) + 1))
    next(batches)
    start, samples = time.perf_counter(), 0
    for batch in batches:
        samples += len(batch["image"])
    return samples / (time.perf_counter() - start)


def machine(device: torch.device) -> str:
    """The device in words, with the CPU thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        name = models[0] if models else name
    return f"{name}, {torch.get_num_threads()} threads"


def size_params(name: str, raw: dict) -> Params:
    """The params of a benchmark size: ``default`` is params.yaml itself, any other name has
    ``presets/<name>.yaml`` merged in."""
    try:
        return from_dict(Params, merged_params(raw, None if name == "default" else name), "")
    except ConfigError as e:
        raise ConfigError(f"benchmark.sizes: {name!r}: {e}") from None


def benchmark_size(
    name: str, raw: dict, hierarchy: MeshHierarchy, dataset: HandDataset, devices: list[torch.device],
    cfg: BenchmarkConfig,
) -> dict:
    """Every number of one model size on every device."""
    params = size_params(name, raw)
    model_cfg = params.model.offline()  # speed does not depend on the weights: nothing downloads
    torch.manual_seed(0)
    model = CLIPHand3D(model_cfg, hierarchy)
    net = InferenceModel(model)
    image = torch.rand(1, 3, model_cfg.image_size, model_cfg.image_size)
    result: dict = {
        "model": f"{model_cfg.backbone.name} at {model_cfg.image_size} px",
        "params_m": {k: v / 1e6 for k, v in count_parameters(net.model).items()},
        "gflops_per_image": {
            "full": flops_per_image(net, image) / 1e9,
            "backbone": flops_per_image(net.model.backbone, image) / 1e9,
        },
        "train_amp": {d.type: {phase: resolve_amp(getattr(params, phase).amp, d) for phase in PHASES} for d in devices},
        "inference": {},
        "train_images_per_s": {},
    }
    for device in devices:
        log.info("benchmark %s on %s: inference", name, device)
        result["inference"][device.type] = inference_speed(model, device, getattr(cfg.speedups, device.type), cfg)
        log.info("benchmark %s on %s: training steps", name, device)
        result["train_images_per_s"][device.type] = train_speed(params, model, dataset, device, cfg.train)
    return result
