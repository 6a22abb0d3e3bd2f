"""Figures of the pipeline (matplotlib, headless), one module per stage that draws them, so a change
to one stage's figure re-runs that stage alone: ``curves`` (training), ``zeroshot``, ``evaluation``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

AXIS_COLORS = {"x": "tab:red", "y": "tab:green", "z": "tab:blue"}


def save(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (legends added, atomically) and close it."""
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
