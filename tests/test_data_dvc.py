"""data.dvc is a real DVC pointer: a fresh clone pulls it offline and the reader reads it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cliphand.data.freihand import FreiHAND

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_fresh_clone_pulls_the_sample(tmp_path):
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    dvc = Path(shutil.which("dvc") or "dvc")
    result = subprocess.run([str(dvc), "pull", "data.dvc"], cwd=clone, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    train = FreiHAND(clone / "data" / "sample", "training")
    evaluation = FreiHAND(clone / "data" / "sample", "evaluation")
    assert (train.num_poses, len(train), len(evaluation)) == (8, 32, 8)
    assert train[5].image.shape == (224, 224, 3) and evaluation.xyz.shape == (8, 21, 3)
