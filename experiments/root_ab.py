"""A/B of root-depth recovery on trained models: the median of the 20 bones' own depths (the
recovery before 2026-12-01) against the least-squares fit of all bones that starts from it
(``Codec25D.root_depth_from_bones``). Per model and setting the finetune stage's depth recovery
and pose prior are refitted on the validation split (the lifter is the model's own), then the
evaluate stage's metrics; one JSON line each (issue 13).

    python experiments/root_ab.py models/model.pt other_seed/model.pt

Run in a pipeline workspace (``data/processed``). ``experiments/runs/root_ab.jsonl``: the default
models of 00cbdc9 at seeds 0, 1 and 2 (the ``full-seed*`` experiments), Intel Xeon.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch

from cliphand import codec, evaluation, metrics
from cliphand.data.dataset import HandDataset
from cliphand.models.io import load_model
from cliphand.outputs import dataset_outputs
from cliphand.paths import PROCESSED
from cliphand.stages.finetune import fit_depth, fit_prior

SETTINGS = {"median": 0, "least_squares": codec.GAUSS_NEWTON_STEPS}  # Gauss-Newton steps after the median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="model files (models/model.pt of finished runs)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.models:
        trained = load_model(path).eval()
        val, ev = (HandDataset(PROCESSED, s, trained.cfg.depth_range) for s in ("val", "eval"))
        gt_xyz, gt_verts = ev.ann["xyz"], ev.ann["verts"].astype(np.float64)
        for name, steps in SETTINGS.items():
            model = copy.deepcopy(trained)
            with patch.object(codec, "GAUSS_NEWTON_STEPS", steps):
                fitted = fit_depth(model, val, 64) | fit_prior(model, val, 64)
                out = dataset_outputs(model, ev, 64, torch.device("cpu"), with_text=False, desc="evaluate")
            row = {"model": str(path), "recovery": name, **{k: round(v, 3) for k, v in fitted.items()}}
            row |= {k: round(v, 2) for k, v in metrics.reported(evaluation.summary(
                gt_xyz, gt_verts, out["joints_cam"], out["verts_cam"])).items()}
            row |= {k: round(v, 1) for k, v in evaluation.root_depth_errors(
                out["joints_cam"][:, 0, 2], gt_xyz[:, 0, 2]).items()}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
