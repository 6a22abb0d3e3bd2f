"""Fault tolerance: NaN stops keep the last good checkpoint, bad checkpoints are refused by name,
and a training stage killed with SIGKILL mid-epoch resumes into the same result and MLflow run."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml
from conftest import tiny_config

from cliphand.checkpoint import CheckpointError, load_checkpoint
from cliphand.config import TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.files import read_csv
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.training import trainer
from cliphand.training.trainer import NonFiniteLossError, lr_factor, train_phase

ROOT = Path(__file__).resolve().parents[1]
CFG = TrainConfig(epochs=2, batch_size=8, warmup_steps=2, workers=0, checkpoint_every=100)


def _model(processed: Path) -> CLIPHand3D:
    torch.manual_seed(0)
    return CLIPHand3D(tiny_config(), MeshHierarchy.load(processed / "hierarchy.npz"))


def _datasets(processed: Path) -> tuple[HandDataset, HandDataset]:
    return HandDataset(processed, "train", 8.0), HandDataset(processed, "val", 8.0)


@pytest.fixture(scope="module")
def nan_run(processed_hands, tmp_path_factory):
    """Pretraining whose targets turn NaN after the first epoch: the error and the checkpoint left."""
    train_set, val_set = _datasets(processed_hands)
    path = tmp_path_factory.mktemp("nan") / "pretrain.pt"

    def poison(metrics: dict, epoch: int) -> None:
        train_set.ann["joints25d"][:] = float("nan")

    with pytest.raises(NonFiniteLossError) as error:
        train_phase(_model(processed_hands), CFG, "pretrain", train_set, val_set, path, on_metrics=poison)
    return error.value, path


def test_epoch_steps_caps_the_steps_of_each_epoch(processed_hands, tmp_path):
    train_set, val_set = _datasets(processed_hands)
    full = len(train_set) // CFG.batch_size
    for cap, steps in ((1, 1), (full + 1, full)):  # beyond a pass over the data: a whole pass
        path = tmp_path / f"cap{cap}.pt"
        result = train_phase(_model(processed_hands), replace(CFG, epoch_steps=cap), "pretrain", train_set, val_set, path)
        state = load_checkpoint(path)
        assert (state["epoch"], state["step"], len(result.history)) == (2, 2 * steps, 2)


@pytest.mark.parametrize("points", [20, 1])
def test_the_step_trace_averages_the_losses_between_its_points(processed_hands, tmp_path, monkeypatch, points):
    """Twenty points an epoch (every step where an epoch has fewer); weighted by their steps, an epoch's
    points average to its record's loss. One point an epoch is the epoch's mean."""
    monkeypatch.setattr(trainer, "TRACE_POINTS", points)
    train_set, val_set = _datasets(processed_hands)
    steps = len(train_set) // CFG.batch_size
    every = max(1, steps // points)
    result = train_phase(_model(processed_hands), CFG, "pretrain", train_set, val_set, tmp_path / "trace.pt")
    ends = [s for e in range(CFG.epochs) for s in range(e * steps + 1, (e + 1) * steps + 1)
            if (s - e * steps) % every == 0 or s == (e + 1) * steps]
    assert [t["step"] for t in result.trace] == ends
    assert [t["epoch"] for t in result.trace] == pytest.approx([s / steps for s in ends])
    for epoch, record in enumerate(result.history, 1):
        points_in = [t for t in result.trace if epoch - 1 < t["epoch"] <= epoch]
        widths = np.diff([(epoch - 1) * steps] + [t["step"] for t in points_in])
        for key in ("train_loss_total", "train_loss_joints"):
            mean = sum(w * t[key] for w, t in zip(widths, points_in)) / steps
            assert record[key] == pytest.approx(mean, rel=1e-9)


def test_decay_fraction_holds_the_lr_then_decays_it(processed_hands, tmp_path):
    """Warmup-stable-decay: at peak through the first half, zero at the end; 1.0 is one cosine."""
    train_set, val_set = _datasets(processed_hands)
    cfg = replace(CFG, decay_fraction=0.5)
    result = train_phase(_model(processed_hands), cfg, "pretrain", train_set, val_set, tmp_path / "wsd.pt")
    assert [r["lr"] for r in result.history] == pytest.approx([cfg.lr, 0.0], abs=1e-12)
    total = 40
    assert [lr_factor(s, total, 4) for s in range(total)] == pytest.approx(
        [min(1, (s + 1) / 4) * 0.5 * (1 + math.cos(math.pi * s / total)) for s in range(total)], abs=0
    )
    assert [lr_factor(s, total, 4, 0.25) for s in (3, 29, 30, 35)] == pytest.approx([1, 1, 1, 0.5])


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(nan_run):
    error, path = nan_run
    assert re.search(rf"pretrain: loss is not finite at step 3 .*'joints': nan.*last good checkpoint is {path}", str(error))
    state = load_checkpoint(path)
    assert (state["epoch"], state["step"], len(state["history"])) == (1, 3, 1)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit(change) -> callable:
    def apply(path: Path) -> None:
        state = load_checkpoint(path)
        change(state)
        torch.save(state, path)

    return apply


def _model_mismatch(state: dict) -> None:
    del state["model"]["pose_head.heatmap2d.weight"]
    state["model"]["pose_head.heatmap2d.bias"] = torch.zeros(3)


@pytest.mark.parametrize(
    "damage, cfg, message",
    [
        (_truncate, CFG, r"unreadable checkpoint \(.*\); delete it to start fresh"),
        (_edit(lambda s: s.pop("optimizer")), CFG, r"not a training checkpoint \(missing optimizer\); delete .* to start fresh"),
        (_edit(_model_mismatch), CFG,
         r"missing keys \(1\): pose_head\.heatmap2d\.weight; shape mismatches \(1\): pose_head\.heatmap2d\.bias: "
         r"checkpoint \(3,\) vs model \(\d+,\); delete .* to start fresh"),
        (_edit(lambda s: s["optimizer"]["param_groups"].clear()), CFG, r"cannot restore the training state \(ValueError"),
        (lambda path: None, replace(CFG, batch_size=4, lr=0.1),
         r"written by a different run \(batch_size: checkpoint 8, now 4; lr: checkpoint 0\.004, now 0\.1\); "
         r"resume with its settings or delete .* to start fresh"),
        (_edit(lambda s: s.update(phase="finetune")), CFG, r"holds phase 'finetune', not 'pretrain'"),
    ],
    ids=["truncated", "missing-entry", "model-keys-and-shapes", "optimizer", "other-settings", "other-phase"],
)
def test_an_unusable_checkpoint_is_an_error_naming_file_and_mismatch(processed_hands, nan_run, tmp_path, damage, cfg, message):
    path = tmp_path / "pretrain.pt"
    shutil.copy(nan_run[1], path)
    damage(path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: .*{message}"):
        train_phase(_model(processed_hands), cfg, "pretrain", *_datasets(processed_hands), path)
    assert path.read_bytes() == before  # never overwritten by a silent fresh start


# The training stage itself, in a subprocess: params like the tiny end-to-end run's.
TINY_MODEL = {
    "image_size": 64, "embed_dim": 64, "pose_width": 32, "joint_dim": 4,
    "mesh": {"widths": [32, 16, 16, 8], "layers": 1, "head_dim": 8},
    "text": {"embed_dim": 64, "width": 64, "layers": 1, "heads": 2, "adapter_layers": 1, "adapter_heads": 2},
}


def stage_dir(root: Path, processed: Path, nproc: int) -> tuple[Path, dict]:
    """A working directory for the ``pretrain`` stage: tiny params, the data, its own MLflow store."""
    root.mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"].update(TINY_MODEL)
    params["preprocess"]["image_size"] = 64
    params["launch"] = {"nproc": nproc}
    params["pretrain"].update(epochs=2, batch_size=8, warmup_steps=2, workers=0, checkpoint_every=1)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "data").mkdir()
    (root / "data" / "processed").symlink_to(processed)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "OMP_NUM_THREADS": "1"}
    return root, env


def run_stage(root: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "cliphand.stages.pretrain"], cwd=root, env=env, capture_output=True, text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_a_stage_killed_mid_epoch_resumes_into_the_same_metrics_and_mlflow_run(processed_hands, tmp_path, nproc):
    import mlflow

    whole, env = stage_dir(tmp_path / "whole", processed_hands, nproc)
    run_stage(whole, env)
    assert not (whole / "checkpoints" / "pretrain.pt").exists()  # removed once the stage completes

    killed, env = stage_dir(tmp_path / "killed", processed_hands, nproc)
    checkpoint = killed / "checkpoints" / "pretrain.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cliphand.stages.pretrain"], cwd=killed, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # The whole tree, as when the machine dies: torchrun puts its workers in sessions of their own.
    tree = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid) for pid in tree if psutil.pid_exists(pid)], timeout=60)
    proc.wait()
    state = load_checkpoint(checkpoint)
    step, run_id = state["step"], state["run"]["mlflow_run_id"]
    assert 0 < step < 3, f"killed at step {step}, not mid-epoch (3 steps per epoch)"
    assert not (killed / "metrics" / "pretrain.json").exists()

    result = run_stage(killed, env)
    resumes = [line for line in result.stderr.splitlines() if "resuming" in line]
    assert len(resumes) == nproc, result.stderr[-3000:]
    assert all(f"pretrain: resuming from checkpoints/pretrain.pt at epoch 0, step {step}" in line for line in resumes)
    expected = yaml.safe_load((whole / "metrics" / "pretrain.json").read_text())
    resumed = yaml.safe_load((killed / "metrics" / "pretrain.json").read_text())
    worst = max(abs(resumed[k] - v) / max(abs(v), 1e-12) for k, v in expected.items())
    print(f"nproc={nproc}: killed at step {step}, resumed; final metrics' largest relative difference {worst:.1e}")
    assert resumed == pytest.approx(expected, rel=1e-6)
    # Every epoch's losses and the step trace too, the steps trained before the kill included.
    for csv in ("pretrain.csv", "pretrain_steps.csv"):
        expected, resumed = (read_csv(root / "plots" / csv) for root in (whole, killed))
        assert len(resumed) == len(expected) and all(r == pytest.approx(e, rel=1e-6) for r, e in zip(resumed, expected)), csv

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("cliphand").experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # the killed run, continued
    history = client.get_metric_history(run_id, "train_loss_total")
    assert sorted(m.step for m in history) == [1, 2]
