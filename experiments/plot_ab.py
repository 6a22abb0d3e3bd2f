"""Learning curves of the recipe A/B runs (``experiments/pose_ab.py`` CSVs): validation PA-MPJPE
against the training process's CPU minutes, so runs of different step costs compare fairly.

    python experiments/plot_ab.py experiments/runs/E.csv:"E" experiments/runs/L0.csv:"L0" --baseline 19.03 --out docs/recipe_ab.png \
        --title "pretraining recipe A/B, default data of a0d65b9 (the renders before 138fb60), 96 px"
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from cliphand.figures import save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+",
                        help="CSV:label[:fmt], fmt a matplotlib format (C1--: colour 1, dashed) so seeds of one arm match")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--baseline", type=float, help="the canonical mean hand's PA-MPJPE (mm), drawn as a line")
    parser.add_argument("--title", required=True, help="what was compared, on which data")
    parser.add_argument("--retrieval", action="store_true",
                        help="a second panel: contrastive top-1 on the split (mean of x, y, z)")
    parser.add_argument("--split", default="validation", choices=("validation", "evaluation"),
                        help="the split the runs validated on (pose_ab.py --val)")
    args = parser.parse_args()
    import matplotlib.pyplot as plt

    if args.retrieval:
        fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    else:
        fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
    handles, labels = [], []
    for spec in args.runs:
        path, label, *fmt = spec.split(":", 2)
        rows = list(csv.DictReader(open(path)))
        cpu = [float(r["cpu_s"]) / 60 for r in rows]
        handles += ax.plot(cpu, [float(r["val_pa_mpjpe_mm"]) for r in rows], *fmt, marker="o")
        labels.append(label)
        if args.retrieval:
            top1 = [100 * sum(float(r[f"val_top1_{a}"]) for a in "xyz") / 3 for r in rows]
            ax_r.plot(cpu, top1, marker="o", color=handles[-1].get_color(), ls=handles[-1].get_linestyle())
    if args.retrieval:
        ax_r.axhline(100 / 16, color="0.5", ls=":")
        ax_r.text(0.02, 100 / 16, " chance", va="bottom", transform=ax_r.get_yaxis_transform(), fontsize=8)
        ax_r.set(xlabel="CPU minutes of the training process (all its threads)",
                 ylabel=f"{args.split} top-1 of 16 prompts, mean x, y, z (%)", title="zero-shot retrieval")
    if args.baseline:
        handles.append(ax.axhline(args.baseline, color="k", ls="--"))
        labels.append("canonical mean hand, a constant\n(evaluation split)")
    # Beside the axes, not over the curves (a figure legend: ``save`` only places axes legends), the
    # constrained layout making room for it next to them.
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    ax.set(xlabel="CPU minutes of the training process (all its threads)", ylabel=f"{args.split} PA-MPJPE (mm)",
           title=args.title)
    save(fig, args.out)


if __name__ == "__main__":
    main()
