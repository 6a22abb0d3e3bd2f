"""The pipeline's stages, one module each (``python -m cliphand.stages.NAME``; dvc.yaml lists them
with exactly the project files each imports, which ``tests/test_structure.py`` checks).

This module is their shared entry point: read and check params.yaml and the tracking server, run
the stage, and turn a user's mistake or a problem with the stage's inputs into one line on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from cliphand.config import ConfigError, Params, read_params
from cliphand.tracking import TrackingError, check_server, tracking_uri

PARAMS_FILE = "params.yaml"
DEBUG_ENV = "CLIPHAND_DEBUG"  # set to 1 for tracebacks instead of one-line errors
# Errors whose message says what is wrong and what to do: printed as one line, exit 1. Named, not
# imported: importing their modules here would make every stage depend on every stage's code.
ONE_LINE_ERRORS = frozenset({
    "builtins.FileNotFoundError",
    "cliphand.checkpoint.CheckpointError",
    "cliphand.config.strict.ConfigError",
    "cliphand.data.download.DownloadError",
    "cliphand.data.freihand.DatasetError",
    "cliphand.files.DiskSpaceError",
})


def run_stage(name: str, work: Callable[[Params, dict], object]) -> None:
    """Check params.yaml and the tracking server, then run ``work(params, raw)``.

    A bad param exits 2 naming the key; an MLflow server that does not answer exits 3, before
    any data is read or any training starts; one of ``ONE_LINE_ERRORS`` (or a subclass) from the
    work exits 1 with ``<stage>: <message>``. ``CLIPHAND_DEBUG=1`` shows tracebacks instead.
    """
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
    try:
        params, raw = read_params(PARAMS_FILE)
    except ConfigError as e:
        sys.exit(_fail(name, f"bad params: {e}", 2))
    try:
        check_server(tracking_uri())
    except TrackingError as e:
        sys.exit(_fail(name, str(e), 3))
    try:
        work(params, raw)
    except Exception as e:
        if not _one_line(e):
            raise
        sys.exit(_fail(name, " ".join(str(e).splitlines()), 1))


def _one_line(error: Exception) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" in ONE_LINE_ERRORS for c in type(error).__mro__)


def _fail(stage: str, message: str, code: int) -> int:
    if os.environ.get(DEBUG_ENV):
        raise
    print(f"{stage}: {message}", file=sys.stderr)
    return code


def sections(raw: dict, *names: str) -> dict:
    """The named sections of the raw params, to log with a stage's MLflow run."""
    return {name: raw.get(name) for name in names}


def log_final(values: dict) -> None:
    """Log a stage's numeric results as metrics of the active MLflow run."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})


def log_artifacts(*paths: os.PathLike | str) -> None:
    """Log files as artifacts of the active MLflow run."""
    import mlflow

    for p in paths:
        mlflow.log_artifact(str(p))
