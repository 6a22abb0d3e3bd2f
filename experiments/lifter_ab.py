"""A/B of the depth lifter's size on a trained model: the finetune stage's calibration (lifter,
depth recovery, pose prior) redone per setting on the same network, then the evaluate stage's
metrics, one JSON line per setting (issue 13).

    python experiments/lifter_ab.py '{"width": 0}' '{"width": 256, "steps": 1500, "seed": 1}'

``width`` 0 is the pose head's own depth; ``seed`` seeds the lifter's initial weights and its
training draws; ``blend`` (``"scalar"`` or ``"per_joint"``) mixes the lifter's depth with the
network's own, ``w · lifter + (1 - w) · network``, ``w`` fitted in least squares on the validation
split before the depth recovery (run AB: ``'{"width": 256, "blend": "scalar"}'``). Run in a pipeline workspace (``models/model.pt``, ``data/processed``). The rows of
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
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.io import load_model
from cliphand.models.lifter import DepthLifter
from cliphand.outputs import dataset_outputs
from cliphand.paths import PROCESSED
from cliphand.skeleton import NUM_JOINTS
from cliphand.stages.finetune import fit_depth, fit_lifter, fit_prior


class BlendedLifter(DepthLifter):
    """The lifter's depth blended with the network's, per joint weights ``w`` ``[21]`` (1: the lifter's)."""

    def __init__(self, depth_range: float, width: int) -> None:
        super().__init__(depth_range, width)
        self.register_buffer("w", torch.ones(NUM_JOINTS))

    def forward(self, joints25d: torch.Tensor) -> torch.Tensor:
        d = self.w * super().forward(joints25d)[..., 2] + (1 - self.w) * joints25d[..., 2]  # [B, 21]
        return torch.cat([joints25d[..., :2], d[..., None]], dim=-1)


def fit_blend(model: CLIPHand3D, val: HandDataset, mode: str) -> dict[str, float]:
    """``w`` of ``model.lifter`` (a ``BlendedLifter``, fitted) in least squares on the validation depths."""
    depths = {}
    for fitted in (True, False):  # the lifter's depth, the network's own
        model.lifter.fitted.fill_(fitted)
        depths[fitted] = dataset_outputs(model, val, 64, torch.device("cpu"), with_mesh=False, with_text=False,
                                         with_prior=False, desc="blend")["joints25d"][..., 2]  # [N, 21]
    model.lifter.fitted.fill_(True)
    a, b, target = depths[True], depths[False], val.ann["joints25d"][..., 2]
    num, den = (a - b) * (target - b), (a - b) ** 2
    if mode == "scalar":  # the root (joint 0) is at depth 0 in both
        w = np.full(NUM_JOINTS, num[:, 1:].sum() / den[:, 1:].sum())
    else:
        w = num.sum(0) / np.maximum(den.sum(0), 1e-12)
    model.lifter.w.copy_(torch.from_numpy(np.clip(w, 0, 1)).float())
    return {"blend_w_mean": float(model.lifter.w[1:].mean())}


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
        lifter = BlendedLifter if s.get("blend") else DepthLifter
        model.lifter = lifter(model.cfg.depth_range, s["width"]) if s["width"] else None
        start = time.perf_counter()
        # The finetune stage's calibration (cliphand.stages.finetune.calibrate), the blend fitted after the lifter.
        fitted = fit_lifter(model, val, TrainConfig(batch_size=64, seed=s.get("seed", 0)))
        if s.get("blend"):
            fitted |= fit_blend(model, val, s["blend"])
        fitted |= fit_depth(model, val, 64) | fit_prior(model, val, 64)
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
