"""Stage ``benchmark``: the speed of the hot paths at every configured model size and device
(``cliphand.benchmark``), into ``metrics/speed.json``; ``cliphand report`` renders it in the README."""

from __future__ import annotations

import json
import logging
import time

import torch

from cliphand import tracking
from cliphand.benchmark import benchmark_size, loader_speed, machine
from cliphand.config import Params
from cliphand.data.dataset import HandDataset
from cliphand.files import write_json
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.paths import METRICS, PROCESSED
from cliphand.stages import run_stage

log = logging.getLogger(__name__)


def benchmark(params: Params, raw: dict) -> dict:
    cfg = params.benchmark
    start = time.perf_counter()
    devices = [torch.device("cpu")]
    if cfg.cuda and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    data_stats = METRICS / "data.json"
    if not data_stats.is_file():
        raise FileNotFoundError(f"{data_stats}: missing; run the download stage first")
    generation = json.loads(data_stats.read_text())
    dataset = HandDataset(PROCESSED, "train", params.model.depth_range, params.prompts.template)
    hierarchy = MeshHierarchy.load(PROCESSED / "hierarchy.npz")
    with tracking.stage_run("benchmark", {"benchmark": raw.get("benchmark")}):
        import mlflow

        result = {
            "torch": torch.__version__,
            "devices": {d.type: machine(d) for d in devices},
            "batch_sizes": {k: getattr(cfg, k).batch_size for k in ("latency", "throughput", "train")},
            "data": {
                "generation_images_per_s": generation.get("images_per_s"),
                "loader_samples_per_s": loader_speed(
                    dataset, params.pretrain.batch_size, params.pretrain.workers, cfg.loader_batches
                ),
                "loader_batch_size": params.pretrain.batch_size,
                "loader_workers": params.pretrain.workers,
            },
            "sizes": {name: benchmark_size(name, raw, hierarchy, dataset, devices, cfg) for name in cfg.sizes},
        }
        result["seconds"] = time.perf_counter() - start
        mlflow.set_tags({"torch": result["torch"], **{f"device.{k}": v for k, v in result["devices"].items()}})
        flat = tracking.flatten(result)
        mlflow.log_metrics({k: v for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        write_json(METRICS / "speed.json", result)
    for name, size in result["sizes"].items():
        for device, inf in size["inference"].items():
            lat = inf["latency"]
            log.info("%s on %s: batch-1 latency %.1f ms eager, %.1f ms optimised; full / backbone %.2fx",
                     name, device, lat["baseline"]["median_ms"], lat["optimised"]["median_ms"],
                     inf["full_over_backbone"]["latency"])
    return result


if __name__ == "__main__":
    run_stage("benchmark", benchmark)
