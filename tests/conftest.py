"""Shared fixtures: tiny, seeded configurations so the suite runs in minutes on 2 CPU cores, and
(for the slow end-to-end tests) a real MLflow server with one tiny `dvc repro` logged to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cliphand.config import (
    BackboneConfig,
    MeshConfig,
    ModelConfig,
    PreprocessConfig,
    TextConfig,
)
from cliphand.data.preprocess import preprocess
from cliphand.data.synthetic import generate
from cliphand.models.hierarchy import build_hierarchy

torch.set_num_threads(2)


def random_hands(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint and vertex clouds shaped like hands in front of a camera (for shapes, not realism)."""
    rng = np.random.default_rng(seed)
    root = np.array([0.0, 0.0, 0.7]) + rng.normal(0, 0.03, (n, 1, 3))
    xyz = root + rng.normal(0, 0.04, (n, 21, 3))
    xyz[:, 0] = root[:, 0]
    verts = root + rng.normal(0, 0.05, (n, 778, 3))
    scale = np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=-1)
    return xyz, verts, scale


@pytest.fixture(scope="session")
def hierarchy():
    xyz, verts, scale = random_hands(16)
    return build_hierarchy(verts, xyz, scale)


@pytest.fixture(scope="session")
def processed_hands(tmp_path_factory):
    """A preprocessed synthetic set at 64 px: 24 training images (6 poses x 4 backgrounds), 3 validation."""
    root = tmp_path_factory.mktemp("hands")
    generate(root / "raw", n_train=9, n_eval=2, image_size=128, seed=7, workers=1, progress=False)
    preprocess(root / "raw", root / "processed", PreprocessConfig(image_size=64, val_fraction=0.34, workers=1))
    return root / "processed"


def tiny_config(**overrides) -> ModelConfig:
    cfg = ModelConfig(
        image_size=64,
        embed_dim=64,
        pose_width=32,
        joint_dim=4,
        backbone=BackboneConfig(name="resnet18"),
        mesh=MeshConfig(widths=(32, 16, 16, 8), layers=1, head_dim=8),
        text=TextConfig(embed_dim=64, width=64, layers=1, heads=2, adapter_layers=1, adapter_heads=2),
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


ROOT = Path(__file__).resolve().parents[1]
# The pipeline's params at a size that reproduces in a few CPU-minutes.
TINY = {
    "data": {"synthetic": {"n_train": 40, "n_eval": 40, "image_size": 128, "workers": 1}},
    "preprocess": {"image_size": 64, "workers": 1},
    "model": {
        "image_size": 64, "embed_dim": 64, "pose_width": 32, "joint_dim": 8, "lifter_width": 64, "lifter_steps": 20,
        "mesh": {"widths": [32, 16, 16, 8], "layers": 1, "head_dim": 8},
        "text": {"embed_dim": 64, "width": 64, "layers": 1, "heads": 2, "adapter_layers": 1, "adapter_heads": 2},
    },
    "pretrain": {"epochs": 2, "batch_size": 8, "warmup_steps": 2},
    "finetune": {"epochs": 1, "batch_size": 8, "warmup_steps": 2},
    "zeroshot": {"batch_sizes": [8, 16], "figure_batch_size": 8, "figure_index": 2},
    "benchmark": {
        "sizes": ["default"], "latency": {"warmup": 1, "reps": 2}, "throughput": {"batch_size": 4, "warmup": 0, "reps": 1},
        "train": {"batch_size": 4, "warmup": 0, "reps": 1}, "loader_batches": 2,
    },
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 with a SQLite store in a temp dir."""
    home = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{home}/mlflow.db", "--artifacts-destination", str(home / "artifacts"),
         "--workers", "1"],
        stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=2)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"mlflow server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


def _merge(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for k, v in overlay.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="session")
def repo(tmp_path_factory, mlflow_server):
    """A clone of this repository with tiny params, reproduced once against the server."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    clone = tmp_path_factory.mktemp("e2e") / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    (clone / "params.yaml").write_text(yaml.safe_dump(_merge(params, TINY), sort_keys=False))
    for cmd in (["git", "config", "user.email", "ci@example.com"], ["git", "config", "user.name", "ci"],
                ["git", "commit", "-qam", "tiny params"]):
        subprocess.run(cmd, cwd=clone, check=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "PYTHONPATH": str(clone)}
    result = subprocess.run(["dvc", "repro"], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return clone, env
