"""Locked-pose tuning of the contrastive side: the text tower, adapters, pose-feature projections and
logit scales trained on a trained model's cached heatmaps, the pose network untouched (as LiT locks
the image tower). Prints a learning curve: zero-shot top-1 among 16 on the evaluation split against
steps and CPU seconds. Run in a pipeline workspace (``models/model.pt``, ``data/processed``):

    python experiments/text_align.py --steps 3000 --out runs/T1.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cliphand import losses, zeroshot
from cliphand.config import TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.losses import LogitScale
from cliphand.models.io import load_model
from cliphand.models.pose_head import PoseFeatures
from cliphand.text.encoder import TextEncoder


@torch.no_grad()
def heatmaps(model, ds: HandDataset, batch: int = 64) -> list[torch.Tensor]:
    """The network's x, y, z heatmaps over a split: ``[[M, 21, bins]] * 3``."""
    out = [[], [], []]
    for start in range(0, len(ds), batch):
        images = torch.stack([ds[i]["image"] for i in range(start, min(start + batch, len(ds)))])
        for a, h in enumerate(model(images, with_mesh=False).heatmaps):
            out[a].append(h.float())
    return [torch.cat(h) for h in out]


@torch.no_grad()
def evaluate(model, sources: list[list[torch.Tensor]], prompts: list[tuple[str, str, str]], n: int = 16) -> list[list[float]]:
    """Zero-shot top-1 among ``n`` per axis, for each source of heatmaps; the prompts are encoded once."""
    feats = [model.pose_features(maps) for maps in sources]
    top1 = [[] for _ in sources]
    for a in range(3):
        texts = [p[a] for p in prompts]
        text = torch.cat([model.encode_text(texts[i:i + 128], a) for i in range(0, len(texts), 128)])
        scale = float(model.logit_scales[a]())
        for row, f in zip(top1, feats):
            row.append(zeroshot.retrieval_metrics(f[a], text, texts, scale, n)["top1"])
    return top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/processed"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/text_align_maps.pt"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--axes", type=int, default=3, help="axes per step, in turn")
    ap.add_argument("--source", choices=("pred", "labels", "both"), default="pred")
    ap.add_argument("--fresh", action="store_true", help="re-initialise the text side, projections and scales")
    ap.add_argument("--sinusoidal", type=float, default=0.0,
                    help="with --fresh: the tower's positional embedding sinusoidal, of this amplitude")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frozen-tower", action="store_true", help="train the adapters, not the text tower")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast, as the training stages run")
    ap.add_argument("--label-sigma", type=float, default=TrainConfig().label_sigma, help="the labels' width, in bins")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    model = load_model(args.model).eval()
    cfg = model.cfg
    train = HandDataset(args.data, "train", cfg.depth_range)
    ev = HandDataset(args.data, "eval", cfg.depth_range)
    key = (str(args.model.resolve()), args.model.stat().st_mtime)
    cached = torch.load(args.cache) if args.cache.is_file() else None
    if cached is None or cached["key"] != key:
        t = time.time()
        cached = {"key": key, "train": heatmaps(model, train), "eval": heatmaps(model, ev)}
        torch.save(cached, args.cache)
        print(f"heatmaps cached in {time.time() - t:.0f} s")
    bins = [h.shape[-1] for h in cached["train"]]
    labels = losses.heatmap_labels(torch.from_numpy(train.ann["joints25d"]).float(), bins, args.label_sigma)
    ev_labels = losses.heatmap_labels(torch.from_numpy(ev.ann["joints25d"]).float(), bins, args.label_sigma)

    if args.fresh:
        model.text = TextEncoder(cfg.text)
        model.pose_features = PoseFeatures(tuple(bins), cfg.embed_dim)
        model.logit_scales = torch.nn.ModuleList(LogitScale() for _ in range(3))
        if args.sinusoidal:
            pe = model.text.tower.positional_embedding  # [L, W]
            pos = torch.arange(pe.shape[0])[:, None].float()
            freq = torch.exp(-math.log(1e3) * torch.arange(0, pe.shape[1], 2).float() / pe.shape[1])
            with torch.no_grad():
                pe[:, 0::2] = args.sinusoidal * torch.sin(pos * freq)
                pe[:, 1::2] = args.sinusoidal * torch.cos(pos * freq)
    if args.frozen_tower:
        model.text.tower.requires_grad_(False)
    params = [*model.text.parameters(), *model.pose_features.parameters(), *model.logit_scales.parameters()]
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps, pct_start=0.05)
    model.text.train()
    sources = {"pred": [cached["train"]], "labels": [labels], "both": [cached["train"], labels]}[args.source]
    rows, cpu0 = [], time.process_time()

    def record(step: int) -> None:
        model.text.eval()
        top1, top1_labels = evaluate(model, [cached["eval"], ev_labels], ev.prompts)
        model.text.train()
        row = {"step": step, "cpu_s": round(time.process_time() - cpu0, 1),
               **{f"top1_{a}": round(100 * v, 1) for a, v in zip("xyz", top1)},
               **{f"labels_top1_{a}": round(100 * v, 1) for a, v in zip("xyz", top1_labels)}}
        rows.append(row)
        print(row, flush=True)

    record(0)
    for step in range(1, args.steps + 1):
        idx = torch.from_numpy(rng.choice(len(train), args.batch, replace=False))
        loss = 0.0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp):
            for axis in ((step * args.axes + i) % 3 for i in range(args.axes)):
                prompts = [train.prompts[i][axis] for i in idx.tolist()]
                text = model.encode_text(prompts, axis)
                ids = losses.prompt_ids(prompts)
                scale = model.logit_scales[axis]()
                for maps in sources:
                    pose = F.normalize(model.pose_features.proj[axis](maps[axis][idx].flatten(1)), dim=-1)
                    loss = loss + losses.clip_loss(pose, text, scale, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            record(step)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
