"""What more pretraining buys: the whole pipeline's PA-MPJPE / PA-MPVPE against the pretraining
length (left), and the network's 2D error on the validation split along each run (right), from
``experiments/runs/scale_pipeline.json`` (runs of ``dvc exp run --temp -S pretrain.epochs=N``).

    python experiments/plot_scale.py experiments/runs/scale_pipeline.json --out docs/recipe_scale.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cliphand.figures import save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib.pyplot as plt

    runs = sorted(json.loads(args.runs.read_text())["runs"], key=lambda r: (r["train_images"], r["pretrain_steps"]))
    default = runs[0]
    pace = default["pretrain_wall_s"] / default["pretrain_steps"] / 60  # minutes per step, the default's run

    def minutes(r: dict, steps: float | None = None) -> float:
        return (r["pretrain_steps"] if steps is None else steps) * pace

    by_data = {n: [r for r in runs if r["train_images"] == n] for n in dict.fromkeys(r["train_images"] for r in runs)}
    markers = dict(zip(by_data, "osD^v"))
    together = [r for r in runs if r["pretrain_epochs"] == default["pretrain_epochs"]]  # poses and steps grown alike
    fig, (ax, ax_uv) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for key, label, colour in (("pa_mpjpe_mm", "PA-MPJPE", "C0"), ("pa_mpvpe_mm", "PA-MPVPE", "C1")):
        for n, group in by_data.items():
            ax.plot([minutes(r) for r in group], [r["model"][key] for r in group], "-", marker=markers[n], color=colour,
                    mfc="white" if n != default["train_images"] else colour, label=f"model {label}, {n:,} images")
        if len(together) > 1:
            ax.plot([minutes(r) for r in together], [r["model"][key] for r in together], "-.", color=colour, lw=1,
                    label=f"{label}, {default['pretrain_epochs']} epochs of each data size")
        ax.axhline(default["baseline"][key], color=colour, ls=":", lw=1, label=f"mean hand {label}")
        ax.axhline(0.5 * default["baseline"][key], color=colour, ls="--", lw=1, label=f"target {label} (0.5x)")
    ax.set_xscale("log")
    ticks = sorted({round(minutes(r)) for r in runs})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(6, 1.6 * default["baseline"]["pa_mpjpe_mm"])  # room above the lines for the legend
    ax.set(xlabel="pretraining, minutes at the default's pace (2-core CPU, log scale)", ylabel="mm, evaluation split",
           title="the whole pipeline against pretraining length and data")
    for r in runs:
        per_epoch = r["pretrain_steps"] / r["pretrain_epochs"]
        ax_uv.plot([minutes(r, h["epoch"] * per_epoch) for h in r["pretrain_history"]],
                   [h["val_uv_error_px"] for h in r["pretrain_history"]], "-", marker=markers[r["train_images"]], ms=3,
                   label=f"{r['pretrain_epochs']} epochs of {r['train_images']:,} images")
    ax_uv.set(xlabel="pretraining, minutes at the default's pace", ylabel="2D error (px of the 96 px input)",
              title="the network's 2D error, each run's validation split")
    save(fig, args.out)


if __name__ == "__main__":
    main()
