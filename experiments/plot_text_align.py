"""Learning curves of ``experiments/text_align.py`` runs: zero-shot top-1 among 16 (mean of x, y, z)
on the evaluation split against CPU minutes, from the network's heatmaps (left) and from the
labels' (right: what the text side can tell apart given a perfect pose).

    python experiments/plot_text_align.py experiments/runs/TA2.csv:"continued" --out docs/text_align.png \
        --title "text side trained on a locked pose network"
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cliphand.figures import save


def mean_top1(row: dict, prefix: str) -> float:
    return sum(float(row[f"{prefix}top1_{a}"]) for a in "xyz") / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="CSV:label")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", required=True)
    parser.add_argument("--reference", type=float, nargs=2, metavar=("NETWORK", "LABELS"),
                        help="the trained model's own top-1 (mean of x, y, z) from its heatmaps and the labels'")
    args = parser.parse_args()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for i, spec in enumerate(args.runs):
        path, label = spec.split(":", 1)
        rows = list(csv.DictReader(open(path)))
        cpu = [float(r["cpu_s"]) / 60 for r in rows]
        for ax, prefix in zip(axes, ("", "labels_")):
            if f"{prefix}top1_x" in rows[0]:
                ax.plot(cpu, [mean_top1(r, prefix) for r in rows], marker="o", label=label, color=f"C{i}")
    for ax, what, ref in zip(axes, ("the network's heatmaps", "the labels' heatmaps (a perfect pose)"),
                             args.reference or (None, None)):
        ax.axhline(100 / 16, color="grey", ls=":", label="chance (6.2 %)")
        if ref is not None:
            ax.axhline(ref, color="black", ls="--", label=f"the pipeline's model ({ref:.1f} %)")
        ax.set(xlabel="CPU minutes (2 threads)", title=f"from {what}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("zero-shot top-1 among 16, mean of x, y, z (%)")
    fig.suptitle(args.title)
    save(fig, args.out)


if __name__ == "__main__":
    main()
