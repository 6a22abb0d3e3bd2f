"""Scratch (run AB): blend the lifter's depth with the network's own, the weight fitted on the validation split.

Run in a pipeline workspace: python experiments/runs/AB_depth_blend.py models/model.pt [other model files].
"""
import copy
import json
import sys
import time

import numpy as np
import torch

from cliphand import evaluation, metrics
from cliphand.config import TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.models.io import load_model
from cliphand.models.lifter import DepthLifter
from cliphand.outputs import dataset_outputs
from cliphand.paths import PROCESSED
from cliphand.stages.finetune import fit_depth, fit_lifter, fit_prior

torch.set_num_threads(2)

class Blend(DepthLifter):
    def forward(self, j):
        lifted = super().forward(j)
        w = self.w.to(j.dtype)  # [21]
        return torch.cat([j[..., :2], (w * lifted[..., 2] + (1 - w) * j[..., 2])[..., None]], -1)

for path in sys.argv[1:]:
    trained = load_model(path).eval()
    val, ev = (HandDataset(PROCESSED, s, trained.cfg.depth_range) for s in ("val", "eval"))
    gt_xyz, gt_verts = ev.ann["xyz"], ev.ann["verts"].astype(np.float64)
    for mode in ("lifter", "scalar", "per_joint"):
        model = copy.deepcopy(trained)
        torch.manual_seed(0)
        model.cfg.lifter_width = 256
        model.lifter = Blend(model.cfg.depth_range, 256)
        model.lifter.register_buffer("w", torch.ones(21))
        t = time.perf_counter()
        rep = fit_lifter(model, val, TrainConfig(batch_size=64, seed=0))
        if mode != "lifter":
            outs = {}
            for fitted in (True, False):
                model.lifter.fitted.fill_(fitted)
                outs[fitted] = dataset_outputs(model, val, 64, torch.device("cpu"), with_mesh=False, with_text=False,
                                               with_prior=False, desc="blend")["joints25d"][..., 2]
            model.lifter.fitted.fill_(True)
            a, b, tgt = outs[True], outs[False], val.ann["joints25d"][..., 2]  # [N, 21]
            num, den = ((a - b) * (tgt - b)), (a - b) ** 2
            if mode == "scalar":
                w = np.full(21, num[:, 1:].sum() / den[:, 1:].sum())
            else:
                w = num.sum(0) / np.maximum(den.sum(0), 1e-12)
            model.lifter.w.copy_(torch.from_numpy(np.clip(w, 0, 1)).float())
            rep["w_mean"] = float(model.lifter.w[1:].mean())
        rep |= fit_depth(model, val, 64) | fit_prior(model, val, 64)
        bare = dataset_outputs(model, ev, 64, torch.device("cpu"), with_text=False, with_prior=False, desc="evaluate")
        with torch.inference_mode():
            joints, verts = model.prior(torch.from_numpy(bare["joints_cam"]), torch.from_numpy(bare["verts_cam"]))
        row = {"model": path, "mode": mode, "s": round(time.perf_counter() - t, 1), **{k: round(v, 3) for k, v in rep.items()}}
        for who, (j, v) in {"model": (joints.numpy(), verts.numpy()), "net": (bare["joints_cam"], bare["verts_cam"])}.items():
            row |= {f"{who}_{k}": round(x, 2) for k, x in metrics.reported(evaluation.summary(gt_xyz, gt_verts, j, v)).items()}
        print(json.dumps(row), flush=True)
