"""Stages fail in one line (``<stage>: <message>``, exit 1; a traceback only with CLIPHAND_DEBUG=1),
and under DVC log to the workspace's MLflow store, not to a temporary copy's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from test_resume import stage_dir
from test_safety_model_files import Trap

from cliphand.checkpoint import CheckpointError
from cliphand.config import ConfigError
from cliphand.data.download import ArchiveError
from cliphand.data.freihand import DatasetIndexError
from cliphand.files import DiskSpaceError
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.models.io import save_model
from cliphand.stages import DEBUG_ENV, run_stage
from cliphand.tracking import stage_run, tracking_uri

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    return tmp_path


@pytest.mark.parametrize("error", [
    FileNotFoundError("data/processed/train.npz: missing; run the preprocess stage first"),
    CheckpointError("checkpoints/pretrain.pt: unreadable checkpoint\n(second line); delete it to start fresh"),
    ConfigError("model.mesh.levels: an increasing subset"),
    ArchiveError("data/raw/FreiHAND.zip", "not a zip archive"),  # a DownloadError
    DatasetIndexError("data/raw: index 99 out of range"),  # a DatasetError
    DiskSpaceError("data/processed: the processed arrays need 25.00 GB but only 1.00 GB is free"),
], ids=lambda e: type(e).__name__)
def test_a_stage_error_is_one_line(workspace, capsys, error):
    def work(params, raw):
        raise error

    with pytest.raises(SystemExit) as exit_:
        run_stage("pretrain", work)
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"pretrain: {' '.join(str(error).splitlines())}\n"


def test_other_errors_and_debug_keep_the_traceback(workspace, monkeypatch):
    def fails(error):
        def work(params, raw):
            raise error
        return work

    with pytest.raises(ZeroDivisionError):  # a bug, not a user's mistake
        run_stage("pretrain", fails(ZeroDivisionError("bug")))
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(CheckpointError):
        run_stage("pretrain", fails(CheckpointError("x.pt: unreadable")))


def _stage(name: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"cliphand.stages.{name}"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _one_line_failure(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1] == expected, result.stderr[-3000:]


def test_stages_fail_in_one_line(processed_hands, tmp_path):
    """As `dvc repro` shows them: a damaged checkpoint, an old pickled model file, no data."""
    root, env = stage_dir(tmp_path / "stage", processed_hands, nproc=1)
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "pretrain.pt").write_bytes(b"half a checkpoint")
    _one_line_failure(_stage("pretrain", root, env), "pretrain: checkpoints/pretrain.pt: unreadable checkpoint "
                      "(truncated, or not written by torch.save); delete it to start fresh")
    (root / "models").mkdir()
    marker = tmp_path / "pwned"
    torch.save({"config": {}, "hierarchy": {}, "model": Trap(str(marker))}, root / "models" / "model.pt")
    _one_line_failure(_stage("zeroshot", root, env), "zeroshot: models/model.pt: a pickled model file (the old "
                      "format, which can run code when loaded); convert a file you trust with `cliphand convert "
                      "models/model.pt`")
    assert not marker.exists()
    (root / "data" / "processed").unlink()
    _one_line_failure(_stage("preprocess", root, env), "preprocess: data/raw: dataset root does not exist (fetch it "
                      "with `python -m cliphand.data.download --out DIR`)")
    debug = _stage("preprocess", root, {**env, DEBUG_ENV: "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "DatasetError" in debug.stderr


def test_evaluate_without_the_training_curves_stops_before_writing(processed_hands, tmp_path):
    """The training stages' CSVs, which evaluate draws, are read first: a missing one is named, nothing is written."""
    root, env = stage_dir(tmp_path / "stage", processed_hands, nproc=1)
    torch.manual_seed(0)
    save_model(CLIPHand3D(tiny_config(), MeshHierarchy.load(processed_hands / "hierarchy.npz")), root / "models" / "model.pt")
    _one_line_failure(_stage("evaluate", root, env),
                      "evaluate: [Errno 2] No such file or directory: 'plots/pretrain.csv'")
    assert not (root / "metrics" / "evaluate.json").exists() and not (root / "docs").exists()


def test_under_dvc_the_store_is_the_workspaces_not_the_temp_copys(tmp_path, monkeypatch):
    """`dvc exp run --temp`/`--queue` run a stage in a temporary copy with DVC_ROOT at the workspace."""
    import mlflow

    workspace, copy = tmp_path / "workspace", tmp_path / "tmp-copy"
    workspace.mkdir()
    copy.mkdir()
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_uri() == "sqlite:///mlflow.db"  # outside DVC: the working directory's, as before
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    assert tracking_uri() == f"sqlite:///{workspace.resolve()}/mlflow.db"
    with stage_run("pretrain", {"pretrain": {"epochs": 1}}) as run:
        mlflow.log_text("logged", "note.txt")
    assert os.listdir(copy) == []
    client = mlflow.MlflowClient(tracking_uri())
    assert client.get_run(run.info.run_id).data.params == {"pretrain.epochs": "1"}
    assert [p.name for p in (workspace / "mlruns").rglob("note.txt")] == ["note.txt"]
