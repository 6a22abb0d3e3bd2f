"""The MLflow UI in a real browser: headless Chromium shows the tiny pipeline's runs and a metric.

Uses conftest.py's session fixtures: ``mlflow server`` on loopback and one tiny ``dvc repro``
logged to it. A screenshot of the runs page is kept in ``$CLIPHAND_TEST_ARTIFACTS`` (default
``test-artifacts/``) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("CLIPHAND_TEST_ARTIFACTS", ROOT / "test-artifacts"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian's `chromium`; .ci/run installs it)"),
]


def _chromium(url: str, profile: Path, *action: str) -> str:
    """Load ``url`` headless, let the page's scripts run, then ``--dump-dom`` or ``--screenshot=...``."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1500,1300", "--virtual-time-budget=15000", *action, url],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_runs_and_a_metric_show_in_the_browser(repo, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("cliphand")
    runs = client.search_runs([experiment.experiment_id])
    page = f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs"

    dom = _chromium(f"{page}?compareRunsMode=CHART", tmp_path / "profile", "--dump-dom")
    for run in runs:  # each run is a link named after its stage
        link = f'href="#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"'
        assert re.search(re.escape(link) + r"[^>]*>(<[^>]+>)*" + re.escape(run.info.run_name) + "<", dom), run.info.run_name

    pretrain = next(r for r in runs if r.info.run_name == "pretrain")
    dom = _chromium(f"{page}/{pretrain.info.run_id}", tmp_path / "profile", "--dump-dom")
    assert ">val_pa_mpjpe_mm<" in dom and ">pretrain.batch_size<" in dom

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mlflow_ui_runs.png"
    shot.unlink(missing_ok=True)
    _chromium(f"{page}?compareRunsMode=CHART", tmp_path / "profile", f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
