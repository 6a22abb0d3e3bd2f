"""How far a trained model fits its training images beyond held-out ones: the network's 2D error
(pixels of the model's input) and PA-MPJPE without the pose prior, on training images (one in four)
and on the evaluation split.

    python experiments/train_gap.py --model models/model.pt --data data/processed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from cliphand import metrics
from cliphand.data.dataset import HandDataset
from cliphand.models.io import load_model
from cliphand.outputs import dataset_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--every", type=int, default=4, help="training images: one in this many")
    args = parser.parse_args()
    model = load_model(args.model)
    for split, every in (("train", args.every), ("eval", 1)):
        dataset = HandDataset(args.data, split, model.cfg.depth_range)
        index = np.arange(0, len(dataset), every)
        out = dataset_outputs(model, Subset(dataset, index.tolist()), 64, torch.device("cpu"), with_mesh=False,
                              with_text=False, with_prior=False, desc=split)
        error_px = model.codec.uv_error_px(out["joints25d"], dataset.ann["joints25d"][index])
        pa = metrics.freihand_summary(dataset.ann["xyz"][index], None, out["joints_cam"], None)["pa_mpjpe_mm"]
        print(f"{split}: {len(index)} images, 2D error {error_px:.2f} px, "
              f"PA-MPJPE without the prior {pa:.2f} mm")


if __name__ == "__main__":
    main()
