"""The training loop shared by contrastive pretraining and mesh fine-tuning.

A phase trains for ``epochs`` over a dataset, validates after each epoch, reports metrics through
a callback (the stages log them to MLflow; training never imports the tracker) and checkpoints
atomically every ``checkpoint_every`` steps and every epoch, so a killed run resumes where it was.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from cliphand import losses, metrics, zeroshot
from cliphand.data.dataset import HandDataset
from cliphand.inference import predict_dataset
from cliphand.losses import prompt_ids
from cliphand.models.cliphand3d import CLIPHand3D, HandOutput
from cliphand.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from cliphand.training.config import TrainConfig

log = logging.getLogger(__name__)

PHASES = ("pretrain", "finetune")
MetricsCallback = Callable[[dict[str, float], int], None]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class PhaseResult:
    """What a finished phase hands to its stage."""

    final: dict[str, float]
    history: list[dict[str, float]]


def compute_losses(
    model: CLIPHand3D, out: HandOutput, batch: dict, cfg: TrainConfig, with_mesh: bool
) -> dict[str, torch.Tensor]:
    """Every weighted loss term of a batch, and their sum under ``total``."""
    w = cfg.loss
    terms: dict[str, torch.Tensor] = {}
    joints25d = batch["joints25d"]
    terms["joints"] = w.joints * losses.joint_loss(out.joints25d, joints25d)
    if w.heatmap:
        terms["heatmap"] = w.heatmap * losses.heatmap_loss(out.logits, joints25d)
    if w.clip and model.text is not None:
        clip = 0.0
        for axis, prompts in enumerate(batch["prompts"]):
            text = model.encode_text(list(prompts), axis)
            ids = prompt_ids(list(prompts)).to(text.device)
            clip = clip + losses.clip_loss(out.pose_feats[axis], text, model.logit_scales[axis](), ids)
        terms["clip"] = w.clip * clip
    if with_mesh:
        indices = [torch.as_tensor(ix, device=joints25d.device) for ix in model.hierarchy.indices]
        terms["verts"] = w.verts * losses.vertex_loss(out.verts25d, batch["verts25d"], indices)
        terms["mesh_joints"] = w.mesh_joints * losses.mesh_joint_loss(
            out.verts25d[-1], model.mesh.joint_regressor, joints25d
        )
    terms["total"] = sum(terms.values())
    return terms


def validate(model: CLIPHand3D, dataset: HandDataset, cfg: TrainConfig, device: torch.device, with_mesh: bool) -> dict[str, float]:
    """Validation metrics: FreiHAND-protocol errors and contrastive top-1 at the training batch."""
    pred = predict_dataset(model, dataset, cfg.batch_size, device, with_mesh=with_mesh, desc="validate")
    gt_verts = dataset.ann["verts"] if with_mesh else None
    summary = metrics.freihand_summary(
        dataset.ann["xyz"], gt_verts, pred["joints_cam"], pred.get("verts_cam") if with_mesh else None
    )
    out = {f"val_{k}": float(summary[k]) for k in ("pa_mpjpe_mm", "mpjpe_mm", "auc_j_aligned")}
    if with_mesh:
        out["val_pa_mpvpe_mm"] = float(summary["pa_mpvpe_mm"])
    if "text_feats" in pred and len(dataset) >= cfg.batch_size:
        for axis, name in enumerate("xyz"):
            r = zeroshot.retrieval_metrics(
                pred["pose_feats"][axis], pred["text_feats"][axis], [p[axis] for p in pred["prompts"]],
                float(pred["logit_scales"][axis]), cfg.batch_size,
            )
            out[f"val_top1_{name}"] = float(r["top1"])
    return out


def train_phase(
    model: CLIPHand3D,
    cfg: TrainConfig,
    phase: str,
    train_set: HandDataset,
    val_set: HandDataset,
    checkpoint_path: Path,
    on_metrics: MetricsCallback | None = None,
    run_info: dict | None = None,
) -> PhaseResult:
    """Train ``model`` for one phase, resuming from ``checkpoint_path`` when it holds this phase."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    with_mesh = phase == "finetune"
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    # Pretraining leaves the mesh regressor out of the graph; freezing it keeps AdamW off it.
    model.mesh.requires_grad_(with_mesh)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True, generator=generator,
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"{phase}.batch_size: {cfg.batch_size} exceeds the {len(train_set)} training samples")
    total = cfg.epochs * steps_per_epoch
    schedule = lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * s / total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    # Mixed precision: bf16 needs no loss scaling; fp16 does (a no-op scaler otherwise).
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")

    start_epoch, step, history = 0, 0, []
    if Path(checkpoint_path).is_file():
        state = load_checkpoint(checkpoint_path)
        if state.get("phase") != phase:
            raise CheckpointError(
                f"{checkpoint_path}: holds phase {state.get('phase')!r}, not {phase!r}; delete it to start fresh"
            )
        load_model_state(model, state["model"], checkpoint_path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        log.info("%s: resumed from %s at epoch %d, step %d", phase, checkpoint_path, start_epoch, step)

    def checkpoint(epoch: int) -> None:
        save_checkpoint(
            {
                "phase": phase, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch, "step": step, "history": history,
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
                "run": run_info or {},
            },
            checkpoint_path,
        )

    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        generator.manual_seed(cfg.seed + epoch)
        sums: dict[str, float] = {}
        skip = step - epoch * steps_per_epoch  # batches of this epoch already trained before a resume
        bar = tqdm(loader, desc=f"{phase} {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for i, batch in enumerate(bar):
            if i < skip:
                continue
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast:
                out = model(batch["image"], with_mesh=with_mesh)
                terms = compute_losses(model, out, batch, cfg, with_mesh)
            if not torch.isfinite(terms["total"]):
                raise NonFiniteLossError(
                    f"{phase}: loss is {terms['total'].item()} at step {step} "
                    f"({ {k: round(v.item(), 4) for k, v in terms.items()} }); "
                    f"the last good checkpoint is {checkpoint_path}"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms["total"]).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            bar.set_postfix(loss=f"{terms['total'].item():.3f}")
            if step % cfg.checkpoint_every == 0:
                checkpoint(epoch)
        n = max(1, steps_per_epoch - skip)
        record = {f"train_loss_{k}": v / n for k, v in sums.items()}
        record.update(validate(model, val_set, cfg, device, with_mesh))
        record["lr"] = scheduler.get_last_lr()[0]
        record["epoch"] = epoch + 1
        history.append(record)
        log.info("%s epoch %d/%d: %s", phase, epoch + 1, cfg.epochs, {k: round(v, 4) for k, v in record.items()})
        if on_metrics is not None:
            on_metrics(record, epoch + 1)
        checkpoint(epoch + 1)
    return PhaseResult(final=history[-1] if history else {}, history=history)
