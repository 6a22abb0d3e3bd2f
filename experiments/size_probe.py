"""Does the trained backbone see how far the hand is? A ridge regression from its pooled stride-16
and stride-32 features to the hand's log apparent size (``cliphand.codec.log_apparent_size``,
which with the crop's intrinsics and the hand's scale gives the root depth), fitted on the training
images and scored on the evaluation split beside the model's own estimate (its bones and root prior).

    python experiments/size_probe.py --model models/model.pt --data data/processed
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cliphand.codec import log_apparent_size
from cliphand.data.dataset import HandDataset
from cliphand.models.io import load_model
from cliphand.outputs import dataset_outputs


@torch.inference_mode()
def pooled_features(model, dataset: HandDataset) -> np.ndarray:
    """Globally averaged C4 and C5 features ``[N, C4 + C5]``."""
    chunks = []
    for batch in DataLoader(dataset, batch_size=64):
        pyramid = model.backbone((batch["image"] - model.mean) / model.std)
        chunks.append(torch.cat([p.float().mean((2, 3)) for p in pyramid[2:]], 1))
    return torch.cat(chunks).double().numpy()


def log_sizes(dataset: HandDataset, root_depth: np.ndarray) -> np.ndarray:
    K, scale = (torch.from_numpy(dataset.ann[k]).double() for k in ("K", "scale"))
    return log_apparent_size(torch.from_numpy(root_depth).double(), K, scale).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--ridge", type=float, nargs="+", default=[1.0, 10.0, 100.0, 1000.0])
    args = parser.parse_args()
    model = load_model(args.model).eval()
    train, test = (HandDataset(args.data, split, model.cfg.depth_range) for split in ("train", "eval"))
    q_train, q_test = log_sizes(train, train.ann["xyz"][:, 0, 2]), log_sizes(test, test.ann["xyz"][:, 0, 2])
    x_train, x_test = pooled_features(model, train), pooled_features(model, test)
    mean, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mean) / sd, (x_test - mean) / sd
    print(f"evaluation split: log apparent size sd {q_test.std():.3f}")
    for ridge in args.ridge:
        w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ (q_train - q_train.mean()))
        error = b @ w + q_train.mean() - q_test
        print(f"ridge {ridge:g}: error sd {error.std():.3f}, mean magnitude {np.abs(error).mean():.3f}")
    own = dataset_outputs(model, test, 64, torch.device("cpu"), with_mesh=False, with_text=False, desc="model")
    error = log_sizes(test, own["joints_cam"][:, 0, 2].astype(np.float64)) - q_test
    print(f"the model's own estimate: error sd {error.std():.3f}, mean magnitude {np.abs(error).mean():.3f}")


if __name__ == "__main__":
    main()
