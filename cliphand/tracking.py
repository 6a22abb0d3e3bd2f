"""MLflow tracking for the pipeline's stages.

With no ``MLFLOW_TRACKING_URI`` the store is a local SQLite file (``mlflow.db``, git-ignored) with
its artifacts in ``mlruns/``, both in the workspace; set the variable to point every stage at a
tracking server. A stage that DVC runs finds the workspace in ``DVC_ROOT``, which DVC sets for every
stage command and, under ``dvc exp run --temp`` or ``--queue``, points at the workspace the
experiment was started from, not at the temporary copy the stage runs in (whose ``mlflow.db`` would
be deleted with it). Every run of a stage is tagged with the git commit, a dirty flag, the stage
name and a hash of params.yaml, so the runs of one ``dvc repro`` or one ``dvc exp run`` group
together in the UI (``tags.cliphand.params_hash``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXPERIMENT = "cliphand"
DEFAULT_URI = "sqlite:///mlflow.db"
DVC_ROOT = "DVC_ROOT"  # set by DVC for every stage it runs: the workspace's root
REGISTERED_MODEL = "cliphand3d"


class TrackingError(RuntimeError):
    """The tracking server cannot be used; raised before any training starts."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, or the local SQLite store: the workspace's under DVC (see the module's
    note on ``DVC_ROOT``), else the working directory's."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = workspace()
    return DEFAULT_URI if root is None else f"sqlite:///{root / 'mlflow.db'}"


def workspace() -> Path | None:
    """The workspace DVC runs the stage for (absolute), or None outside DVC."""
    root = os.environ.get(DVC_ROOT)
    return Path(root).resolve() if root else None


def experiment_name() -> str | None:
    """The ``dvc exp run`` experiment (ablations are ones) this process runs in, or None (``dvc repro``)."""
    return os.environ.get("DVC_EXP_NAME") or None


def check_server(uri: str, timeout: float = 5.0) -> None:
    """For an HTTP(S) tracking URI, fail fast with a clear message when the server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status != 200:
                raise TrackingError(f"MLflow server {uri} answered {r.status} on /health")
    except (urllib.error.URLError, OSError) as e:
        raise TrackingError(
            f"MLflow tracking server {uri} does not answer ({e}); start it or unset MLFLOW_TRACKING_URI"
        ) from e


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become their JSON text."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, tuple)) else value
    return flat


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def run_tags(stage: str, params_file: Path = Path("params.yaml")) -> dict[str, str]:
    """Tags that identify where a run came from and group the runs of one pipeline execution."""
    params_text = params_file.read_bytes() if params_file.is_file() else b""
    commit = _git("rev-parse", "HEAD")
    tags = {
        "cliphand.stage": stage,
        "cliphand.params_hash": hashlib.sha256(params_text + commit.encode()).hexdigest()[:12],
        "mlflow.source.git.commit": commit,
        "cliphand.git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
    }
    # Set by `dvc exp run`: the experiment's name and the commit it branches from.
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(var):
            tags[f"dvc.{var.lower()}"] = os.environ[var]
    return tags


def _create_experiment(uri: str) -> None:
    """Create the experiment with its artifacts in the workspace's ``mlruns/`` when the store is the
    workspace's SQLite file: MLflow would put them beside the working directory, a temp copy's
    under ``dvc exp run --temp``, and so lose them (and the registered models) with it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    root = workspace()
    if root is None or uri != f"sqlite:///{root / 'mlflow.db'}" or mlflow.get_experiment_by_name(EXPERIMENT):
        return
    try:
        mlflow.create_experiment(EXPERIMENT, artifact_location=(root / "mlruns" / EXPERIMENT).as_uri())
    except MlflowException:
        pass  # created meanwhile by a concurrent stage (`dvc queue start -j N`)


@contextmanager
def stage_run(stage: str, params: Mapping[str, Any], run_id: str | None = None) -> Iterator[Any]:
    """Start (or, with ``run_id``, continue) the MLflow run of a stage, logging params and tags."""
    import mlflow

    uri = tracking_uri()
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    _create_experiment(uri)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else stage, tags=run_tags(stage)) as run:
        if run_id is None:
            mlflow.log_params(flatten(params))
        yield run
