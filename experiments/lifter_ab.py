"""A/B of the depth lifter's size on a trained model: the finetune stage's calibration (lifter,
depth recovery, pose prior) redone per setting on the same network, then the evaluate stage's
metrics, one JSON line per setting (issue 13).

    python experiments/lifter_ab.py '{"width": 0}' '{"width": 256, "steps": 1500, "seed": 1}'

``width`` 0 is the pose head's own depth; ``seed`` seeds the lifter's initial weights and its
training draws. Run in a pipeline workspace (``models/model.pt``, ``data/processed``). The rows of
``experiments/runs/lifter_ab.jsonl`` are the default model of 6e2d22f (trained before the lifter
existed; the same network as the pipeline's since), AMD EPYC, 2 threads, one run at a time.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from cliphand import evaluation, metrics
from cliphand.config import TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.models.io import load_model
from cliphand.models.lifter import DepthLifter
from cliphand.outputs import dataset_outputs
from cliphand.paths import PROCESSED
from cliphand.stages.finetune import calibrate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", type=json.loads, help='JSON: {"width": W, "steps": S, "seed": N}')
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trained = load_model(args.model).eval()
    val, ev = (HandDataset(PROCESSED, s, trained.cfg.depth_range) for s in ("val", "eval"))
    gt_xyz, gt_verts = ev.ann["xyz"], ev.ann["verts"].astype(np.float64)
    for s in args.settings:
        model = copy.deepcopy(trained)
        torch.manual_seed(s.get("seed", 0))
        model.cfg.lifter_width, model.cfg.lifter_steps = s["width"], s.get("steps", model.cfg.lifter_steps)
        model.lifter = DepthLifter(model.cfg.depth_range, s["width"]) if s["width"] else None
        start = time.perf_counter()
        fitted = calibrate(model, val, TrainConfig(batch_size=64, seed=s.get("seed", 0)))
        seconds = time.perf_counter() - start
        bare = dataset_outputs(model, ev, 64, torch.device("cpu"), with_text=False, with_prior=False, desc="evaluate")
        with torch.inference_mode():
            joints, verts = model.prior(torch.from_numpy(bare["joints_cam"]), torch.from_numpy(bare["verts_cam"]))
        rows = {"model": (joints.numpy(), verts.numpy()), "net": (bare["joints_cam"], bare["verts_cam"])}
        row = {"setting": s, "calib_s": round(seconds, 1), **{k: round(v, 3) for k, v in fitted.items()}}
        for who, (j, v) in rows.items():
            row |= {f"{who}_{k}": round(x, 2) for k, x in metrics.reported(evaluation.summary(gt_xyz, gt_verts, j, v)).items()}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
