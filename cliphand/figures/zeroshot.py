"""The zeroshot stage's figures: the seed README's demo and retrieval against the batch size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cliphand.figures import AXIS_COLORS, save


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
    return save(fig, path)


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
    return save(fig, path)
