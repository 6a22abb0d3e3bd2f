"""The evaluate stage's figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from cliphand.figures import save


def pck_figure(rows: Sequence[dict], path: Path) -> Path:
    """PCK after Procrustes alignment over 0–50 mm: the model's joints and vertices, the baseline's joints."""
    t = [r["threshold_mm"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(t, [r["model_joints"] for r in rows], label="model, joints")
    ax.plot(t, [r["model_verts"] for r in rows], label="model, vertices")
    ax.plot(t, [r["baseline_joints"] for r in rows], "k--", label="mean pose, joints")
    ax.set(xlabel="threshold (mm)", ylabel="PCK (aligned)", ylim=(0, 1.02), title="FreiHAND protocol, evaluation split")
    return save(fig, path)
