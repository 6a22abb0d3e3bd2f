"""Figures of the pipeline: training curves, zero-shot retrieval, PCK curves (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

AXIS_COLORS = {"x": "tab:red", "y": "tab:green", "z": "tab:blue"}


def _save(fig: plt.Figure, path: Path) -> Path:
    for ax in fig.axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def training_curves(history: Sequence[dict], path: Path, title: str) -> Path:
    """Loss terms, validation errors and contrastive top-1 against the epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in history[0]:
        if key.startswith("train_loss_"):
            axes[0].plot(epochs, [h[key] for h in history], marker="o", label=key.removeprefix("train_loss_"))
    axes[0].set(title=f"{title}: training losses", xlabel="epoch", yscale="log")
    for key in ("val_pa_mpjpe_mm", "val_pa_mpvpe_mm"):
        if key in history[0]:
            axes[1].plot(epochs, [h[key] for h in history], marker="o", label=key.removeprefix("val_"))
    axes[1].set(title="validation error", xlabel="epoch", ylabel="mm")
    for axis, color in AXIS_COLORS.items():
        key = f"val_top1_{axis}"
        if key in history[0]:
            axes[2].plot(epochs, [h[key] for h in history], marker="o", color=color, label=axis)
    axes[2].set(title="validation pose→prompt top-1", xlabel="epoch", ylim=(0, 1))
    for ax in axes:
        ax.set_xticks(epochs)  # whole epochs: a one-epoch phase is one point, not a fractional axis
    return _save(fig, path)


def zeroshot_curve(rows: Sequence[dict], path: Path) -> Path:
    """Top-1 retrieval accuracy per axis against the batch size, with chance level."""
    sizes = [r["batch_size"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for axis, color in AXIS_COLORS.items():
        ax.plot(sizes, [r[f"{axis}_top1"] for r in rows], marker="o", color=color, label=f"{axis} top-1")
    ax.plot(sizes, [r["x_chance"] for r in rows], "k--", label="chance")
    ax.set(xscale="log", xlabel="batch size N (prompts to choose from)", ylabel="accuracy", ylim=(0, 1.02),
           title="zero-shot image→prompt retrieval, evaluation split")
    ax.minorticks_off()  # the log axis' minor labels would crowd the batch sizes
    ax.set_xticks(sizes, [str(s) for s in sizes])
    return _save(fig, path)


def zeroshot_figure(
    image: np.ndarray, probs: Sequence[np.ndarray], prompts: Sequence[Sequence[str]], index: int, path: Path
) -> Path:
    """The seed README's demo: one image, the three [N, N] probability matrices, its prompts."""
    fig = plt.figure(figsize=(15, 5.8))
    grid = fig.add_gridspec(2, 4, height_ratios=[4, 1.2])
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(image)
    ax.set_title(f"image {index} of the batch")
    ax.axis("off")
    for a, (axis, p) in enumerate(zip("xyz", probs)):
        ax = fig.add_subplot(grid[0, a + 1])
        ax.imshow(p, cmap="viridis", vmin=0, vmax=1)
        ax.axhline(index, color="w", lw=0.6, alpha=0.6)
        ax.set(title=f"{axis}: p(prompt | image) = {p[index, index]:.2%}", xlabel="prompt", ylabel="image")
    text = fig.add_subplot(grid[1, :])
    text.axis("off")
    lines = [f"{axis}: {prompts[index][a]}" for a, axis in enumerate("xyz")]
    text.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7.5, wrap=True)
    return _save(fig, path)


def pck_figure(rows: Sequence[dict], path: Path) -> Path:
    """PCK after Procrustes alignment over 0–50 mm: the model's joints and vertices, the baseline's joints."""
    t = [r["threshold_mm"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(t, [r["model_joints"] for r in rows], label="model, joints")
    ax.plot(t, [r["model_verts"] for r in rows], label="model, vertices")
    ax.plot(t, [r["baseline_joints"] for r in rows], "k--", label="mean pose, joints")
    ax.set(xlabel="threshold (mm)", ylabel="PCK (aligned)", ylim=(0, 1.02), title="FreiHAND protocol, evaluation split")
    return _save(fig, path)
