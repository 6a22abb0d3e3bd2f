"""The full model can fit 8 synthetic hands: every loss falls several-fold, retrieval is perfect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config
from torch.utils.data import default_collate

from cliphand import zeroshot
from cliphand.config import LossWeights, PreprocessConfig, TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.data.preprocess import preprocess
from cliphand.data.synthetic import generate
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.training.trainer import compute_losses

# On the photo-backed renders with objects in front, z retrieval stood at 7 of 8 after 400 steps
# (enough on the plainer renders before) and at 8 of 8 after 600.
STEPS = 600


@pytest.mark.slow
def test_full_model_overfits_eight_hands(tmp_path):
    torch.manual_seed(0)
    generate(tmp_path / "raw", n_train=10, n_eval=2, image_size=128, seed=7, workers=1, progress=False)
    preprocess(tmp_path / "raw", tmp_path / "proc", PreprocessConfig(image_size=64, val_fraction=0.0, workers=1))
    full = HandDataset(tmp_path / "proc", "train", depth_range=8.0)
    # Eight distinct poses (the first background of each), so the 8 prompts per axis differ.
    data = default_collate([full[i] for i in range(8)])
    assert all(len(set(p)) == 8 for p in data["prompts"])

    model = CLIPHand3D(tiny_config(), MeshHierarchy.load(tmp_path / "proc" / "hierarchy.npz"))
    cfg = TrainConfig(batch_size=8, lr=1e-3, amp="none", loss=LossWeights(joints=1.0, heatmap=0.5, clip=0.05, verts=1.0, mesh_joints=1.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for step in range(STEPS):  # the default recipe: one contrastive axis per step, in turn
        terms = compute_losses(model, model(data["image"]), data, cfg, with_mesh=True, step=step)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in terms.items()})
    first, last = history[0], np.mean([[h[k] for k in history[0]] for h in history[-10:]], axis=0)
    for key, end in zip(history[0], last):
        assert end < first[key] / 3, f"{key}: {first[key]:.4f} → {end:.4f}, not a several-fold drop"

    model.eval()
    with torch.no_grad():
        out = model(data["image"])
        for axis in range(3):
            text = model.encode_text(list(data["prompts"][axis]), axis)
            r = zeroshot.retrieval_metrics(
                out.pose_feats[axis].numpy(), text.numpy(), list(data["prompts"][axis]),
                float(model.logit_scales[axis]()), batch_size=8,
            )
            assert r["top1"] == 1.0, f"axis {'xyz'[axis]}: top-1 {r['top1']}"
