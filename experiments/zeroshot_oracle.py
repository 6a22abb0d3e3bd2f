"""How much of the zero-shot retrieval the network's pose allows, without any text model.

For each evaluation image and each prompt of its batch of N (the zeroshot stage's batches), the
score is the correlation between the image's predicted camera-space coordinates on one axis and the
ranks of the joints in that prompt's order; the best-scoring prompt is the guess. Top-1 is counted
as in ``cliphand.zeroshot`` (a prompt with the image's own text is right). Run in a pipeline
workspace (``models/model.pt``, ``data/processed``):

    python experiments/zeroshot_oracle.py            # top-1 among 16 per axis, as JSON
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cliphand.data.dataset import HandDataset
from cliphand.models.io import load_model
from cliphand.outputs import dataset_outputs
from cliphand.paths import PROCESSED
from cliphand.text.prompts import joint_orders


def centred_unit(x: np.ndarray) -> np.ndarray:
    """Rows ``[M, 21]`` minus their mean, over their norm: dot products are correlations."""
    x = x - x.mean(-1, keepdims=True)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def oracle_top1(pred: np.ndarray, order: np.ndarray, prompts: list[str], batch_size: int) -> float:
    """Top-1 of one axis: predicted coordinates ``[M, 21]``, the joint orders the prompts spell
    ``[M, 21]`` and the prompts ``[M]``, in consecutive batches (the last incomplete one dropped)."""
    ranks = np.argsort(order, axis=-1).astype(float)  # [M, 21]: each joint's place in the order
    score, ranks = centred_unit(pred), centred_unit(ranks)
    hits = []
    for start in range(0, len(pred) - batch_size + 1, batch_size):
        rows = slice(start, start + batch_size)
        best = (score[rows] @ ranks[rows].T).argmax(1)  # [N]
        hits += [prompts[start + b] == prompts[start + i] for i, b in enumerate(best)]
    return float(np.mean(hits))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    model = load_model(args.model).eval()
    ev = HandDataset(PROCESSED, "eval", model.cfg.depth_range)
    out = dataset_outputs(model, ev, 64, torch.device("cpu"), with_mesh=False, desc="predict")
    orders = joint_orders(ev.ann["xyz"])  # [M, 3, 21]
    row = {}
    for a, axis in enumerate("xyz"):
        prompts = [p[a] for p in out["prompts"]]
        row[f"oracle_top1_{axis}"] = round(oracle_top1(out["joints_cam"][..., a], orders[:, a], prompts,
                                                      args.batch_size), 3)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
