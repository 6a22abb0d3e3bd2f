"""A/B runs of the training recipe at equal CPU time, without the whole pipeline.

Trains one phase (default: pretrain) from params.yaml with ``-S key=value`` overrides on the
preprocessed data, validating after every epoch, and writes the learning curve (validation metrics
against the process's CPU seconds and wall seconds) as CSV. The issue tracker's notes quote these
curves; ``dvc exp run`` reproduces the chosen recipe end to end.

    python experiments/pose_ab.py --data data/processed --out runs/base.csv
    python experiments/pose_ab.py --data data/processed --out runs/d3.csv -S model.depth_range=3

Under torchrun (``python -m torch.distributed.run --standalone --nproc-per-node=2
experiments/pose_ab.py ...``) every process trains its share of each batch, as ``launch.nproc``
does in the pipeline; rank 0 records and writes (its CPU seconds are its own).
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch
import yaml

from cliphand.config import Params, from_dict, load_yaml
from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy, build_hierarchy
from cliphand.training import distributed
from cliphand.training.trainer import seed_everything, train_phase


def override(raw: dict, assignment: str) -> None:
    """``a.b.c=value`` (value parsed as YAML) written into ``raw``."""
    key, value = assignment.split("=", 1)
    *parents, leaf = key.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phase", default="pretrain", choices=("pretrain", "finetune"))
    parser.add_argument("--init", type=Path, help="finetune: the pretrained model file to start from")
    parser.add_argument("--val", default="val", choices=("val", "eval"),
                        help="split validated after each epoch: eval compares runs on different training sets")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rebuild-hierarchy", action="store_true", help="build the mesh hierarchy with this code")
    parser.add_argument("-S", dest="sets", action="append", default=[], help="params override key=value")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = load_yaml("params.yaml")
    for s in args.sets:
        override(raw, s)
    params = from_dict(Params, raw, "")
    cfg = getattr(params, args.phase)
    if args.rebuild_hierarchy:
        import numpy as np

        with np.load(args.data / "train.npz") as t:
            hierarchy = build_hierarchy(t["verts"], t["xyz"], t["scale"], faces=MeshHierarchy.load(args.data / "hierarchy.npz").faces)
    else:
        hierarchy = MeshHierarchy.load(args.data / "hierarchy.npz")
    seed_everything(cfg.seed)
    model = CLIPHand3D(params.model, hierarchy)
    if args.init:
        from cliphand.models.io import load_model

        model.load_state_dict(load_model(args.init).state_dict(), strict=False)
    ds = (params.model.depth_range, params.prompts.template)
    train = HandDataset(args.data, "train", *ds, augment=cfg.augment, seed=cfg.seed)
    val = HandDataset(args.data, args.val, *ds)
    rows, cpu0, wall0 = [], time.process_time(), time.perf_counter()

    def record(metrics: dict, epoch: int) -> None:
        rows.append({"epoch": epoch, "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0, **metrics})
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)

    ckpt = args.out.with_suffix(".ckpt")
    ckpt.unlink(missing_ok=True)  # a fresh run, not a resume
    with distributed.process_group(cfg.device) as world:
        train_phase(model, cfg, args.phase, train, val, ckpt, on_metrics=record)
    if not world.is_main:
        return
    ckpt.unlink(missing_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    if args.phase == "pretrain":
        from cliphand.models.io import save_model

        save_model(model.cpu(), args.out.with_suffix(".pt"))


if __name__ == "__main__":
    main()
