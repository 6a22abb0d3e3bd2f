"""Training curves of the pretrain and finetune stages, drawn by the evaluate stage from their CSVs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from cliphand.figures import AXIS_COLORS, save


def training_curves(history: Sequence[dict], trace: Sequence[dict], path: Path, title: str) -> Path:
    """The step trace's loss terms, and each epoch's validation errors and contrastive top-1,
    against the epoch (fractional for the trace's points within an epoch)."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    at = [t["epoch"] for t in trace]
    for key in trace[0]:
        # A term weighted 0 is off (0 throughout), and a log axis has no place for it.
        if key.startswith("train_loss_") and any(t[key] for t in trace):
            axes[0].plot(at, [t[key] for t in trace], label=key.removeprefix("train_loss_"))
    axes[0].set(title=f"{title}: training losses", xlabel="epoch", yscale="log")
    for key in ("val_pa_mpjpe_mm", "val_pa_mpvpe_mm"):
        if key in history[0]:
            axes[1].plot(epochs, [h[key] for h in history], marker="o", label=key.removeprefix("val_"))
    axes[1].set(title="validation error (after each epoch)", xlabel="epoch", ylabel="mm")
    if "val_uv_error_px" in history[0]:  # the 2D error on its own scale, named by its axis (one legend)
        px = axes[1].twinx()
        px.plot(epochs, [h["val_uv_error_px"] for h in history], "k--", marker="s")
        px.set(ylabel="2D error (px), dashed")
    for axis, color in AXIS_COLORS.items():
        key = f"val_top1_{axis}"
        if key in history[0]:
            axes[2].plot(epochs, [h[key] for h in history], marker="o", color=color, label=axis)
    axes[2].set(title="validation pose→prompt top-1", xlabel="epoch", ylim=(0, 1))
    ticks = range(0, int(max(epochs)) + 1)
    for ax in axes:
        ax.set_xticks(ticks)  # whole epochs, from the start of training
        ax.set_xlim(0, max(epochs) * 1.03)
    return save(fig, path)
