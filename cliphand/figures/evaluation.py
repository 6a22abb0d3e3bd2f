"""The evaluate stage's figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cliphand.figures import save


def pck_figure(rows: Sequence[dict], path: Path) -> Path:
    """PCK after Procrustes alignment over 0–50 mm: the model's joints and vertices, the baseline's joints."""
    t = [r["threshold_mm"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(t, [r["model_joints"] for r in rows], label="model, joints")
    ax.plot(t, [r["model_verts"] for r in rows], label="model, vertices")
    ax.plot(t, [r["baseline_joints"] for r in rows], "k--", label="canonical mean hand, joints")
    ax.set(xlabel="threshold (mm)", ylabel="PCK (aligned)", ylim=(0, 1.02), title="FreiHAND protocol, evaluation split")
    return save(fig, path)


def smoothness_figure(model_mm: np.ndarray, truth_mm: np.ndarray, path: Path) -> Path:
    """Per-vertex Laplacian magnitude (how far a vertex sticks out of its neighbours) of the predicted
    and the true meshes: a spiky mesh has a long right tail; a collapsed, flattened one a pile-up
    near zero (look at the prediction figure too: the number alone cannot tell them apart)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    top = float(np.percentile(np.concatenate([model_mm.ravel(), truth_mm.ravel()]), 99.5))
    bins = np.linspace(0.0, top, 60)
    for values, label, style in ((truth_mm, "truth", "k--"), (model_mm, "model", "-")):
        density, edges = np.histogram(values.ravel(), bins=bins, density=True)
        ax.plot((edges[:-1] + edges[1:]) / 2, density, style, label=f"{label}: mean {values.mean():.2f} mm")
    ax.set(xlabel="|Laplacian| per vertex (mm)", ylabel="density", title="mesh smoothness, evaluation split")
    return save(fig, path)
