"""End to end: a tiny `dvc repro` against a real MLflow server on loopback, then `dvc exp run`.

The server and the reproduced clone are the session fixtures ``mlflow_server`` and ``repo`` of
conftest.py, shared with the MLflow UI test."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cliphand.files import read_csv
from cliphand.serving import load_predictor

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("download", "preprocess", "pretrain", "finetune", "zeroshot", "evaluate", "benchmark")


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
    trace = read_csv(repo[0] / "plots" / "pretrain_steps.csv")  # and the step trace, at its optimiser steps
    assert sorted(m.step for m in client.get_metric_history(pretrain.info.run_id, "step_loss_total")) == [
        int(t["step"]) for t in trace]
    assert by_stage["evaluate"].data.metrics["model_pa_mpjpe_mm"] > 0
    assert {"pck.png", "prediction.png", "pretrain_curves.png", "finetune_curves.png"} <= {
        a.path for a in client.list_artifacts(by_stage["evaluate"].info.run_id)}
    versions = client.search_model_versions("name='cliphand3d'")
    assert versions
    assert client.get_model_version_by_alias("cliphand3d", "champion").version  # set by the default pipeline
    predictor = load_predictor(f"models:/cliphand3d/{versions[0].version}", mlflow_server)
    out = predictor.net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 21 + 778, 3) and torch.isfinite(out).all()


@pytest.mark.slow
def test_exp_run_with_a_param_override_and_two_processes(repo):
    clone, env = repo
    result = subprocess.run(
        ["dvc", "exp", "run", "-S", "pretrain.epochs=1", "-S", "launch.nproc=2"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "torch.distributed.run" in result.stdout + result.stderr  # relaunched under torchrun
    shown = subprocess.run(["dvc", "exp", "show", "--csv"], cwd=clone, capture_output=True, text=True)
    assert "pretrain.epochs" in shown.stdout and "launch.nproc" in shown.stdout


@pytest.mark.slow
def test_ablation_runs_as_a_dvc_experiment_and_is_tabulated(repo):
    clone, env = repo
    result = subprocess.run(
        [sys.executable, "-m", "cliphand.ablation", "full", "direct-778", "--seeds", "0"], cwd=clone, env=env,
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = json.loads((clone / "metrics" / "ablation.json").read_text())
    full, direct = table["rows"]
    assert full["name"] == "full" and direct["name"] == "direct-778"
    assert full["seeds"][0]["command"] == "dvc repro"  # the workspace's own run is seed 0
    assert direct["seeds"][0]["command"] == (
        "dvc exp run --temp -n direct-778-seed0 evaluate zeroshot -S '++model.mesh.levels=[778]' -S 'model.mesh.widths=[32]' "
        "-S pretrain.seed=0 -S finetune.seed=0"
    )
    assert direct["pa_mpjpe_mm"]["mean"] != full["pa_mpjpe_mm"]["mean"] and direct["pa_mpjpe_mm"]["sd"] == 0.0
    # The retrieval the contrastive loss is for, from each run's zero-shot stage, beside the pose.
    zeroshot = json.loads((clone / "metrics" / "zeroshot.json").read_text())["table"]
    assert full["zeroshot_top1_z"]["mean"] == zeroshot["z"]["16"]["top1"]
    assert full["network_pa_mpjpe_mm"]["mean"] > 0 and 0 <= direct["zeroshot_top1_x"]["mean"] <= 1
    shown = subprocess.run(["dvc", "exp", "show", "--csv"], cwd=clone, capture_output=True, text=True)
    assert "direct-778-seed0" in shown.stdout


def test_a_dead_tracking_server_stops_the_stage_before_any_work(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "cliphand.stages.pretrain"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    assert result.returncode == 3 and "does not answer" in result.stderr
    assert time.time() - start < 60 and not (tmp_path / "checkpoints").exists()
