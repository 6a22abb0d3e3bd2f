"""Figures of the pipeline (matplotlib, headless), one module per stage that draws them, so a change
to one stage's figure re-runs that stage alone: ``curves`` (training), ``zeroshot``, ``evaluation``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cliphand.files import atomic_path

AXIS_COLORS = {"x": "tab:red", "y": "tab:green", "z": "tab:blue"}


def save(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (legends added; atomically, as ``files.atomic_path``) and close it."""
    for ax in fig.axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
