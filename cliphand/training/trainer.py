"""The training loop shared by contrastive pretraining and mesh fine-tuning.

A phase trains for ``epochs`` over a dataset, validates after each epoch, reports metrics through
a callback (the stages log them to MLflow; training never imports the tracker): the epoch's
record, and the training loss averaged over each twentieth of an epoch (the step trace); it checkpoints
atomically every ``checkpoint_every`` steps and every epoch, so a killed run resumes where it was.
It runs the same on one process or on every process of a torchrun world
(``cliphand.training.distributed``): DDP, a sampler dealing one global batch order, losses
averaged over the processes, and rank 0 alone validating, reporting and checkpointing.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cliphand import losses, metrics, zeroshot
from cliphand.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from cliphand.config import ConfigError, TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.devices import resolve_amp, resolve_device
from cliphand.losses import prompt_ids
from cliphand.models.cliphand3d import CLIPHand3D, HandOutput
from cliphand.outputs import dataset_outputs
from cliphand.tracking import flatten
from cliphand.training import distributed
from cliphand.training.distributed import World

log = logging.getLogger(__name__)

PHASES = ("pretrain", "finetune")
MetricsCallback = Callable[[dict[str, float], int], None]
# TrainConfig fields that change how a phase runs, not what it computes: free to differ on resume.
RESUME_FREE = ("device", "workers", "checkpoint_every")
CHECKPOINT_KEYS = ("phase", "model", "optimizer", "scheduler", "scaler", "epoch", "step", "history", "trace",
                   "loss_sums", "rng", "resume_key")
# Points of the step trace per epoch: the loss curve within an epoch (a one-epoch phase is a curve, not a point).
TRACE_POINTS = 20


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class PhaseResult:
    """What a finished phase hands to its stage: the last epoch's record, every epoch's, and the step
    trace (``step``, ``epoch`` as a fraction, ``lr`` and the ``train_loss_*`` terms averaged since the
    point before)."""

    final: dict[str, float]
    history: list[dict[str, float]]
    trace: list[dict[str, float]]


def compute_losses(
    model: CLIPHand3D, out: HandOutput, batch: dict, cfg: TrainConfig, with_mesh: bool, step: int = 0
) -> dict[str, torch.Tensor]:
    """Every weighted loss term of a batch, and their sum under ``total``.

    The contrastive terms of optimiser step ``step`` cover ``cfg.clip_axes_per_step`` axes in turn
    (x, y, z, x, …), scaled by 3 / that count: the same loss in expectation, for a share of the text
    side's cost, which at the default size exceeds the rest of a pretraining step. ``clip`` matches
    the prompts against the network's pose features (through the pose head and backbone only with
    ``cfg.clip_shapes_pose``), ``clip_labels`` against the same projection of the labels' heatmaps,
    which are sharp and tell the samples apart from the first step, when the network's do not yet.
    """
    w = cfg.loss
    terms: dict[str, torch.Tensor] = {}
    joints25d = batch["joints25d"]
    # The heatmap losses' targets, which the contrastive loss's labels term also reads: built once.
    labels = (losses.heatmap_labels(joints25d, [l.shape[-1] for l in out.logits], cfg.label_sigma)
              if w.heatmap or w.heatmap2d or w.clip_labels else None)
    terms["joints"] = w.joints * losses.joint_loss(out.joints25d, joints25d)
    if w.bones:
        terms["bones"] = w.bones * losses.bone_loss(out.joints25d, joints25d)
    if w.heatmap:
        terms["heatmap"] = w.heatmap * losses.heatmap_loss(out.logits, labels)
    if w.heatmap2d:
        terms["heatmap2d"] = w.heatmap2d * losses.heatmap2d_loss(out.heatmap2d, labels)
    if (w.clip or w.clip_labels) and model.text is not None:
        n = cfg.clip_axes_per_step
        feats = {}  # [[B, E]] * 3 per term
        if w.clip:
            feats["clip"] = out.pose_feats if cfg.clip_shapes_pose else model.pose_features(
                [h.detach() for h in out.heatmaps])
        if w.clip_labels:
            feats["clip_labels"] = model.pose_features(labels)
        sums = dict.fromkeys(feats, 0.0)
        for axis in ((step * n + i) % 3 for i in range(n)):
            prompts = list(batch["prompts"][axis])
            text = model.encode_text(prompts, axis)
            ids = prompt_ids(prompts).to(text.device)
            scale = model.logit_scales[axis]()
            for name, f in feats.items():
                sums[name] = sums[name] + losses.clip_loss(f[axis], text, scale, ids)
        for name, value in sums.items():
            terms[name] = getattr(w, name) * (3 / n) * value
    if with_mesh:
        indices = [torch.as_tensor(ix, device=joints25d.device) for ix in model.hierarchy.indices]
        terms["verts"] = w.verts * losses.vertex_loss(out.verts25d, batch["verts25d"], indices)
        terms["mesh_joints"] = w.mesh_joints * losses.mesh_joint_loss(
            out.verts25d[-1], model.mesh.joint_regressor, joints25d
        )
        if w.edges and len(model.mesh.edges):
            terms["edges"] = w.edges * losses.edge_loss(out.verts25d[-1], batch["verts25d"], model.mesh.edges)
    terms["total"] = sum(terms.values())
    return terms


class TrainingObjective(nn.Module):
    """The model and its losses as one module, so DDP sees every parameter used in its forward."""

    def __init__(self, model: CLIPHand3D, cfg: TrainConfig, with_mesh: bool) -> None:
        super().__init__()
        self.model, self.cfg, self.with_mesh = model, cfg, with_mesh

    def forward(self, batch: dict, step: int = 0) -> dict[str, torch.Tensor]:
        """Every weighted loss term of ``batch`` at optimiser step ``step`` (scalars), with their sum under ``total``."""
        out = self.model(batch["image"], with_mesh=self.with_mesh)
        return compute_losses(self.model, out, batch, self.cfg, self.with_mesh, step)


class TrainStep:
    """One optimiser step of a phase, the one the trainer runs and the benchmark times: forward
    under autocast, the losses averaged over the processes and checked, gradients (scaled for fp16)
    accumulated over ``grad_accum`` micro-batches, clipped, and the optimiser stepped.

    Pretraining leaves the mesh regressor out of the graph, so it is frozen and AdamW stays off it;
    so are the parts ``cfg.frozen`` names (fine-tuning's default: the backbone and pose head), which
    also run in eval mode, their BatchNorm statistics the phase's starting ones.
    """

    def __init__(self, model: CLIPHand3D, cfg: TrainConfig, phase: str, device: torch.device, world: World) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        self.cfg, self.phase, self.device, self.world = cfg, phase, device, world
        with_mesh = phase == "finetune"
        # NHWC, the layout oneDNN's and cuDNN's fastest convolutions take: a default pretraining
        # step 1.2x faster on a 2-core CPU (about 118 → 98 ms at batch 16), fine-tuning unchanged.
        model.to(device, memory_format=torch.channels_last)
        model.mesh.requires_grad_(with_mesh)
        self.frozen = [m for m in (getattr(model, name) for name in cfg.frozen) if m is not None]
        for module in self.frozen:
            module.requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError(f"{phase}.frozen: nothing left to train")
        # Fused: one kernel over all parameters, not the per-tensor loop torch picks on the CPU
        # (11 % less CPU time per default pretraining epoch: experiments/runs, L0 against K).
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        # Mixed precision: bf16 needs no loss scaling; fp16 does (a no-op scaler otherwise).
        self.amp = resolve_amp(cfg.amp, device)
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp)
        self.autocast = torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == "fp16")
        self.net = distributed.wrap(TrainingObjective(model, cfg, with_mesh), world, device)

    def __call__(self, micro_batches: Iterable[dict], step: int = 0) -> dict[str, float]:
        """Train on ``grad_accum`` micro-batches; their loss terms, averaged over micro-batches and processes.

        Raises NonFiniteLossError (naming ``step``) before any update when a term is NaN or infinite.
        """
        accum = self.cfg.grad_accum
        self.net.train()
        for module in self.frozen:
            module.eval()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        for i, batch in enumerate(micro_batches):
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
            with distributed.accumulating(self.net, i < accum - 1):
                with self.autocast:
                    terms = self.net(batch, step)
                # Averaged over the processes: every process sees the same values and stops together.
                values = distributed.mean(torch.stack([t.detach().float() for t in terms.values()]), self.world)
                if not torch.isfinite(values).all():
                    raise NonFiniteLossError(
                        f"{self.phase}: loss is not finite at step {step} "
                        f"({ {k: round(v, 4) for k, v in zip(terms, values.tolist())} })"
                    )
                self.scaler.scale(terms["total"] / accum).backward()
            for k, v in zip(terms, values.tolist()):
                sums[k] = sums.get(k, 0.0) + v / accum
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return sums


def lr_factor(step: int, total: int, warmup_steps: int, decay_fraction: float = 1.0) -> float:
    """The learning rate's multiplier at ``step`` of ``total``: a linear warmup over ``warmup_steps``,
    then held at 1 until the last ``decay_fraction`` of the steps, over which it falls to 0 as a half
    cosine (1.0: the whole run is one cosine; less: warmup-stable-decay)."""
    warmup = min(1.0, (step + 1) / max(1, warmup_steps))
    hold = total * (1.0 - decay_fraction)
    if step < hold:
        return warmup
    return warmup * 0.5 * (1 + math.cos(math.pi * (step - hold) / (total - hold)))


def validate(model: CLIPHand3D, dataset: HandDataset, cfg: TrainConfig, device: torch.device, with_mesh: bool) -> dict[str, float]:
    """Validation metrics: FreiHAND-protocol errors, the 2D error in pixels and contrastive top-1 at
    the training batch."""
    pred = dataset_outputs(model, dataset, cfg.batch_size, device, with_mesh=with_mesh, desc="validate")
    gt_verts = dataset.ann["verts"] if with_mesh else None
    summary = metrics.freihand_summary(
        dataset.ann["xyz"], gt_verts, pred["joints_cam"], pred.get("verts_cam") if with_mesh else None
    )
    out = {f"val_{k}": float(summary[k]) for k in metrics.VALIDATION_KEYS}
    # What a recipe change must move to reach the model past the lifter (PA-MPJPE here reads the pose head's depths).
    out["val_uv_error_px"] = model.codec.uv_error_px(pred["joints25d"], dataset.ann["joints25d"])
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


def resume_key(
    cfg: TrainConfig, world: World, model: CLIPHand3D, train_set: HandDataset, val_set: HandDataset
) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: everything that changes what the phase computes.

    The phase's TrainConfig (less ``RESUME_FREE``), the process count and data size; the model's
    whole config (``model.*``) and the prompt template of ``train_set``; and digests of the data each split's
    annotations hold (``data.train``, ``data.val``; the images by their array's shape, as hashing
    gigabytes would stall every start), of the mesh hierarchy, of the weights the phase starts from
    (``initial_weights``: models/pretrain.pt's for finetune, the seeded initialisation for
    pretrain) and of the package's source (``code``). Computed before any step or restore.
    """
    from cliphand.checkpoint import digest, source_digest

    def data(dataset: HandDataset) -> str:
        # joints25d/verts25d are HandDataset's targets, computed from these arrays and model.depth_range.
        names = sorted(k for k in dataset.ann if k not in ("joints25d", "verts25d"))
        return digest([*((k, dataset.ann[k]) for k in names), ("images.shape", np.asarray(dataset.images.shape))])

    key = flatten({k: v for k, v in asdict(cfg).items() if k not in RESUME_FREE})
    key.update(processes=world.size, train_samples=len(train_set))
    key.update(flatten(asdict(model.cfg), "model."))
    key["prompts.template"] = train_set.template
    key["data.train"], key["data.val"] = data(train_set), data(val_set)
    key["data.hierarchy"] = digest(sorted(model.hierarchy.arrays().items()))
    key["initial_weights"] = digest(model.state_dict().items())
    key["code"] = source_digest()
    return key


def check_resumable(state: dict[str, Any], phase: str, expected: dict[str, Any], path: Path) -> None:
    """A CheckpointError naming ``path`` and the mismatch unless ``state`` can resume this run."""
    fresh = f"delete {path} to start fresh"
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a training checkpoint (missing {', '.join(missing)}); {fresh}")
    if state["phase"] != phase:
        raise CheckpointError(f"{path}: holds phase {state['phase']!r}, not {phase!r}; {fresh}")
    found = state["resume_key"]
    diffs = [f"{k}: checkpoint {found.get(k)!r}, now {v!r}" for k, v in expected.items() if found.get(k) != v]
    if diffs:
        raise CheckpointError(
            f"{path}: written by a different run ({'; '.join(diffs)}); resume with its settings or {fresh}"
        )


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's random states as plain data, which ``weights_only`` loading accepts: NumPy's
    state tuple holds an ndarray (unpickling one runs numpy's reconstructor), so its key is a tensor."""
    name, mt_key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"name": name, "key": torch.from_numpy(mt_key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def train_phase(
    model: CLIPHand3D,
    cfg: TrainConfig,
    phase: str,
    train_set: HandDataset,
    val_set: HandDataset,
    checkpoint_path: Path,
    on_metrics: MetricsCallback | None = None,
    on_trace: MetricsCallback | None = None,
    run_info: dict | None = None,
) -> PhaseResult:
    """Train ``model`` for one phase, resuming from ``checkpoint_path`` when it holds this phase.

    Run by every process of the current world (``distributed.current()``); all return the same
    history. Only rank 0 calls ``on_metrics`` (each epoch's record, at the epoch's number) and
    ``on_trace`` (each point of the step trace, its terms named ``step_loss_*`` and ``step_lr``, at
    its optimiser step), and writes the checkpoint, with ``run_info`` in it.
    """
    checkpoint_path = Path(checkpoint_path)
    with_mesh = phase == "finetune"
    world = distributed.current()
    device = resolve_device(cfg.device, world.local_rank if world.size > 1 else None)
    micro = cfg.micro_batch(world.size, phase)  # samples per process and forward pass
    seed_everything(cfg.seed)
    train_step = TrainStep(model, cfg, phase, device, world)
    optimizer, scaler = train_step.optimizer, train_step.scaler
    sampler = distributed.ResumableSampler(train_set, world, cfg.seed)
    loader = DataLoader(
        train_set, batch_size=micro, sampler=sampler, drop_last=True,
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
    )
    # Whole global batches per epoch, whatever the process count (see ResumableSampler).
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{phase}.batch_size: {cfg.batch_size} exceeds the {len(train_set)} training samples")
    if 0 < cfg.epoch_steps < steps_per_epoch:
        steps_per_epoch = cfg.epoch_steps  # the first batches of each epoch's permutation
    total = cfg.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, cfg.warmup_steps, cfg.decay_fraction)
    )

    key = resume_key(replace(cfg, amp=train_step.amp), world, model, train_set, val_set)  # amp as resolved here
    trace_every = max(1, steps_per_epoch // TRACE_POINTS)
    start_epoch, step, history, trace = 0, 0, [], []
    # The loss terms summed over the epoch so far and since the last trace point, checkpointed with
    # the rest: a resumed run reports the losses of the steps trained before the kill too.
    sums: dict[str, dict[str, float]] = {"epoch": {}, "trace": {}}
    if checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path)
        check_resumable(state, phase, key, checkpoint_path)
        try:
            load_model_state(model, state["model"], checkpoint_path)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        except CheckpointError as e:
            raise CheckpointError(f"{e}; delete {checkpoint_path} to start fresh") from e
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(
                f"{checkpoint_path}: cannot restore the training state ({type(e).__name__}: {e}); "
                f"delete {checkpoint_path} to start fresh"
            ) from e
        start_epoch, step, history = state["epoch"], state["step"], state["history"]
        trace, sums = state["trace"], state["loss_sums"]
        _set_rng_state(state["rng"][world.rank], device)
        log.info("%s: resuming from %s at epoch %d, step %d", phase, checkpoint_path, start_epoch, step)

    def checkpoint(epoch: int) -> None:
        rng = distributed.gather_objects(_rng_state(device), world)  # every process's, in rank order
        if world.is_main:
            save_checkpoint(
                {
                    "phase": phase, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    # The sampler's position: the permutation of `epoch`, after `step` global batches.
                    "epoch": epoch, "step": step, "history": history, "trace": trace, "loss_sums": sums,
                    "rng": rng,
                    "resume_key": key, "run": run_info or {},
                },
                checkpoint_path,
            )

    for epoch in range(start_epoch, cfg.epochs):
        done = step - epoch * steps_per_epoch  # steps of this epoch trained before a resume
        sampler.set_position(epoch, done * cfg.grad_accum * micro)
        batches = iter(loader)
        bar = tqdm(
            range(done, steps_per_epoch), desc=f"{phase} {epoch + 1}/{cfg.epochs}", unit="step", leave=False,
            disable=not world.is_main,
        )
        for _ in bar:
            try:
                reduced = train_step((next(batches) for _ in range(cfg.grad_accum)), step)
            except NonFiniteLossError as e:
                last = checkpoint_path if checkpoint_path.is_file() else "none (no checkpoint written yet)"
                raise NonFiniteLossError(f"{e}; the last good checkpoint is {last}") from None
            for totals in sums.values():
                for k, v in reduced.items():
                    totals[k] = totals.get(k, 0.0) + v
            lr = scheduler.get_last_lr()[0]  # the rate this step trained at
            scheduler.step()
            step += 1
            bar.set_postfix(loss=f"{reduced['total']:.3f}")
            into_epoch = step - epoch * steps_per_epoch
            if into_epoch % trace_every == 0 or into_epoch == steps_per_epoch:
                n = (into_epoch - 1) % trace_every + 1  # steps since the last point (the epoch's last may be short)
                window = {k: v / n for k, v in sums["trace"].items()}
                sums["trace"] = {}
                trace.append({"step": step, "epoch": step / steps_per_epoch, "lr": lr,
                              **{f"train_loss_{k}": v for k, v in window.items()}})
                if world.is_main and on_trace is not None:
                    on_trace({"step_lr": lr, **{f"step_loss_{k}": v for k, v in window.items()}}, step)
            if step % cfg.checkpoint_every == 0:
                checkpoint(epoch)
        record = {f"train_loss_{k}": v / steps_per_epoch for k, v in sums["epoch"].items()}
        sums["epoch"] = {}
        if world.is_main:
            record.update(validate(model, val_set, cfg, device, with_mesh))
        record = distributed.from_main(record, world)
        record["lr"] = scheduler.get_last_lr()[0]
        record["epoch"] = epoch + 1
        history.append(record)
        if world.is_main:
            log.info("%s epoch %d/%d: %s", phase, epoch + 1, cfg.epochs, {k: round(v, 4) for k, v in record.items()})
            if on_metrics is not None:
                on_metrics(record, epoch + 1)
        checkpoint(epoch + 1)
    return PhaseResult(final=history[-1] if history else {}, history=history, trace=trace)
