"""Does the image tell the network more about depth than its own 2D skeleton does? (issue 13)

The pose head reads each joint's depth from image features under the joint's heatmap. This probe
trains, without any image, a small MLP that reads the root-relative depths from the 2D skeleton
alone (a "lifter", as in Martinez et al. 2017): on the training hands, each articulation shown
under another training hand's orientation and place, its 2D joints jittered by the network's own
per-joint 2D error on the validation split. It then compares on the evaluation split the
network's 2.5D pose with its own depth and with the lifter's depth read from the network's u, v:
PA-MPJPE placed at the true root, without and with a pose prior fitted on the validation split
as the finetune stage fits it.

    python experiments/depth_probe.py --model models/model.pt --data data/processed

On the default model of 7e06de4 (AMD EPYC, 2 cores, under a minute a seed): the network's own
depth 21.50 mm, 15.07 with the prior; the lifter's 17.69 ± 0.05 / 14.71 ± 0.02 over seeds 0–2
(a scratch version's blends of the two depths fell in between).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cliphand import metrics
from cliphand.data.dataset import HandDataset
from cliphand.meanhand import canonical_mean_hand
from cliphand.models.io import load_model
from cliphand.models.prior import PosePrior, hand_frame
from cliphand.outputs import dataset_outputs


def normalised_2d(uv: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels ``[B, 21, 2]`` → viewing-ray coordinates relative to the root over their RMS size
    ``[B, 21, 2]``, and that size ``[B]``."""
    rays = torch.cat([uv, torch.ones_like(uv[..., :1])], -1) @ torch.linalg.inv(K).transpose(-1, -2)
    xy = rays[..., :2] - rays[:, :1, :2]
    size = xy.pow(2).sum(-1).mean(1).sqrt()
    return xy / size[:, None, None], size


class Lifter(nn.Module):
    """2D skeleton ``[B, 21, 2]`` (``normalised_2d``) → root-relative depths over (root depth × 2D
    size) ``[B, 21]``: the units of its input."""

    def __init__(self, width: int = 512, blocks: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(42, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Dropout(0.1), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.out = nn.Linear(width, 21)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class Recombined:
    """Training hands, each articulation under another hand's orientation, place and camera."""

    def __init__(self, xyz: np.ndarray, K: np.ndarray, mean: Tensor, noise_px: Tensor, seed: int) -> None:
        self.xyz, self.K = torch.from_numpy(xyz).double(), torch.from_numpy(K).double()
        self.centre, self.size, self.rot = hand_frame(self.xyz, mean)
        self.canonical = (self.xyz - self.centre) / self.size @ self.rot
        self.noise_px = noise_px
        self.g = torch.Generator().manual_seed(seed)

    def batch(self, n: int) -> tuple[Tensor, Tensor]:
        i, j = (torch.randint(len(self.xyz), (n,), generator=self.g) for _ in range(2))
        cam = self.canonical[i] @ self.rot[j].transpose(1, 2) * self.size[i] + self.centre[j]  # [n, 21, 3]
        uv = cam @ self.K[j].transpose(1, 2)
        uv = uv[..., :2] / uv[..., 2:]
        uv = uv + torch.randn(uv.shape, generator=self.g, dtype=uv.dtype) * self.noise_px[:, None]
        x, size = normalised_2d(uv, self.K[j])
        depth = (cam[..., 2] - cam[:, :1, 2]) / (cam[:, :1, 2] * size[:, None])
        return x.float(), depth.float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    ap.add_argument("--data", type=Path, default=Path("data/processed"))
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    model = load_model(args.model)
    codec, cpu = model.codec, torch.device("cpu")
    splits = {s: HandDataset(args.data, s, codec.depth_range) for s in ("val", "eval")}
    pred = {s: dataset_outputs(model, d, 64, cpu, with_text=False, with_mesh=False, with_prior=False)["joints25d"]
            for s, d in splits.items()}
    with np.load(args.data / "train.npz") as train:
        _, first = np.unique(train["pose"], return_index=True)
        train_xyz, train_K, train_verts = train["xyz"][first], train["K"][first], train["verts"][first]

    def ann(s: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        a = splits[s].ann
        return tuple(torch.from_numpy(np.asarray(a[k])).double() for k in ("xyz", "K", "scale", "joints25d"))

    val_xyz, val_K, val_scale, val_true = ann("val")
    noise_px = ((torch.from_numpy(pred["val"]).double()[..., :2] - val_true[..., :2]) * codec.image_size).pow(2).mean((0, 2)).sqrt()
    print("network's 2D error on validation, px RMS per coordinate:", np.round(noise_px.numpy(), 1))

    mean, _ = canonical_mean_hand(train_xyz, train_verts)
    mean = torch.from_numpy((mean - mean.mean(0)) / np.linalg.norm(mean - mean.mean(0)))  # as PosePrior keeps it
    data = Recombined(train_xyz, train_K, mean, noise_px, args.seed)
    lifter = Lifter()
    opt = torch.optim.AdamW(lifter.parameters(), 1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=args.steps)
    for _ in range(args.steps):
        x, y = data.batch(256)
        loss = (lifter(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    lifter.eval()

    def placed(s: str, which: str) -> np.ndarray:
        """The network's u, v with its own or the lifter's depth, at the true root: ``[N, 21, 3]``."""
        xyz, K, scale, _ = ann(s)
        p25 = torch.from_numpy(pred[s]).double()
        if which == "lifter":
            x, size = normalised_2d(p25[..., :2] * codec.image_size - 0.5, K)
            with torch.no_grad():
                rel = lifter(x.float()).double() * (xyz[:, :1, 2] * size[:, None])  # meters
            p25 = torch.cat([p25[..., :2], (rel / scale[:, None] / (2 * codec.depth_range) + 0.5)[..., None]], -1)
        return codec.decode(p25, xyz[:, 0, 2], K, scale).numpy()

    eval_xyz = splits["eval"].ann["xyz"]
    print("| depth | PA-MPJPE (mm) | with a pose prior fitted on validation |\n|---|---:|---:|")
    for which in ("network", "lifter"):
        val_cam, eval_cam = placed("val", which), placed("eval", which)
        fitted = PosePrior(21, 778, model.prior.components)
        val_verts = splits["val"].ann["verts"]  # the vertices' weights play no part here
        fitted.fit(train_xyz, train_verts, (val_cam, val_verts), (val_xyz.numpy(), val_verts))
        with torch.no_grad():
            filtered = fitted(torch.from_numpy(eval_cam).float())[0].numpy()
        bare, prior_pa = (metrics.freihand_summary(eval_xyz, None, p, None)["pa_mpjpe_mm"] for p in (eval_cam, filtered))
        print(f"| {which} | {bare:.2f} | {prior_pa:.2f} |")


if __name__ == "__main__":
    main()
