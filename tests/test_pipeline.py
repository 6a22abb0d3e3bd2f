"""End to end: a tiny `dvc repro` against a real MLflow server on loopback, then `dvc exp run`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "data": {"synthetic": {"n_train": 40, "n_eval": 40, "image_size": 128, "workers": 1}},
    "preprocess": {"image_size": 64, "workers": 1},
    "model": {
        "image_size": 64, "embed_dim": 64, "pose_width": 32, "joint_dim": 8,
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
STAGES = ("download", "preprocess", "pretrain", "finetune", "zeroshot", "evaluate", "benchmark")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
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


@pytest.mark.slow
def test_repro_writes_metrics_and_plots_and_then_does_nothing(repo):
    clone, env = repo
    for name in ("data", "preprocess", "pretrain", "finetune", "zeroshot", "evaluate", "speed"):
        assert (clone / "metrics" / f"{name}.json").is_file()
    for name in ("pretrain_curves.png", "zeroshot_demo.png", "zeroshot_accuracy.png", "pck.png"):
        assert (clone / "plots" / name).stat().st_size > 5000
    again = subprocess.run(["dvc", "repro"], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Running stage" not in again.stdout
    shown = subprocess.run(["dvc", "metrics", "show", "--md"], cwd=clone, capture_output=True, text=True)
    assert "pa_mpjpe_mm" in shown.stdout


@pytest.mark.slow
def test_server_has_runs_params_metrics_tags_and_the_registered_model(repo, mlflow_server):
    import mlflow
    import torch
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("cliphand")
    runs = client.search_runs([experiment.experiment_id])
    by_stage = {r.data.tags["cliphand.stage"]: r for r in runs}
    assert set(STAGES) <= set(by_stage)
    assert len({r.data.tags["cliphand.params_hash"] for r in runs}) == 1  # one repro, one group
    pretrain = by_stage["pretrain"]
    assert pretrain.data.params["pretrain.batch_size"] == "8"
    assert "val_pa_mpjpe_mm" in pretrain.data.metrics
    assert len(client.get_metric_history(pretrain.info.run_id, "train_loss_total")) == 2  # per epoch
    assert by_stage["evaluate"].data.metrics["model_pa_mpjpe_mm"] > 0
    versions = client.search_model_versions("name='cliphand3d'")
    assert versions
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pytorch.load_model(f"models:/cliphand3d/{versions[0].version}")
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 21 + 778, 3) and torch.isfinite(out).all()


@pytest.mark.slow
def test_exp_run_with_a_param_override(repo):
    clone, env = repo
    result = subprocess.run(
        ["dvc", "exp", "run", "-S", "pretrain.epochs=1"], cwd=clone, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shown = subprocess.run(["dvc", "exp", "show", "--csv"], cwd=clone, capture_output=True, text=True)
    assert "pretrain.epochs" in shown.stdout


def test_a_dead_tracking_server_stops_the_stage_before_any_work(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    start = time.time()
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "pretrain.py")], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 3 and "does not answer" in result.stderr
    assert time.time() - start < 60 and not (tmp_path / "checkpoints").exists()
