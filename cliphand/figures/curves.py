"""Training curves of the pretrain and finetune stages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from cliphand.figures import AXIS_COLORS, save


def training_curves(history: Sequence[dict], path: Path, title: str) -> Path:
    """Loss terms, validation errors and contrastive top-1 against the epoch."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), layout="constrained")
    for key in history[0]:
        # A term weighted 0 is off (0 throughout), and a log axis has no place for it.
        if key.startswith("train_loss_") and any(h[key] for h in history):
            axes[0].plot(epochs, [h[key] for h in history], marker="o", label=key.removeprefix("train_loss_"))
    axes[0].set(title=f"{title}: training losses", xlabel="epoch", yscale="log")
    for key in ("val_pa_mpjpe_mm", "val_pa_mpvpe_mm"):
        if key in history[0]:
            axes[1].plot(epochs, [h[key] for h in history], marker="o", label=key.removeprefix("val_"))
    axes[1].set(title="validation error", xlabel="epoch", ylabel="mm")
    if "val_uv_error_px" in history[0]:  # the 2D error on its own scale, named by its axis (one legend)
        px = axes[1].twinx()
        px.plot(epochs, [h["val_uv_error_px"] for h in history], "k--", marker="s")
        px.set(ylabel="2D error (px), dashed")
    for axis, color in AXIS_COLORS.items():
        key = f"val_top1_{axis}"
        if key in history[0]:
            axes[2].plot(epochs, [h[key] for h in history], marker="o", color=color, label=axis)
    axes[2].set(title="validation pose→prompt top-1", xlabel="epoch", ylim=(0, 1))
    for ax in axes:
        ax.set_xticks(epochs)  # whole epochs: a one-epoch phase is one point, not a fractional axis
    return save(fig, path)
