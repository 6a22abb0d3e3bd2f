"""Stage ``finetune``: the mesh regressor on the pretrained pose network (frozen by default:
``finetune.frozen``), the calibration fitted after it, then the model registered in MLflow (see
``cliphand.stages.train``)."""

from functools import partial

import numpy as np
import torch

from cliphand.codec import fit_root_prior, log_apparent_size
from cliphand.config import TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.outputs import dataset_outputs
from cliphand.paths import PROCESSED
from cliphand.serving import log_model
from cliphand.stages import run_stage
from cliphand.stages.train import train


def training_hands(*keys: str) -> list[np.ndarray]:
    """Arrays of the training split, one row per pose (not per background version)."""
    with np.load(PROCESSED / "train.npz") as train:
        _, first = np.unique(train["pose"], return_index=True)
        return [train[k][first] for k in keys]


def fit_lifter(model: CLIPHand3D, val_set: HandDataset, cfg: TrainConfig) -> dict[str, float]:
    """The depth lifter (``cliphand.models.lifter``), trained on the training hands with the
    network's own 2D error on the validation split (``lifter_noise_px``: its mean, in pixels)."""
    if model.lifter is None:
        return {}
    out = dataset_outputs(model, val_set, cfg.batch_size, torch.device("cpu"), with_mesh=False, with_text=False,
                          with_prior=False, desc="depth lifter")
    error = out["joints25d"][..., :2] - val_set.ann["joints25d"][..., :2]  # [N, 21, 2], u, v units
    noise = np.sqrt((error**2).mean(axis=(0, 2)))  # [21]
    xyz, verts, K, scale = training_hands("xyz", "verts", "K", "scale")
    report = model.lifter.fit(xyz, verts, K, scale, noise, model.codec, model.cfg.lifter_steps, cfg.seed)
    return {"lifter_noise_px": float(noise.mean() * model.cfg.image_size), **report}


def fit_depth(model: CLIPHand3D, val_set: HandDataset, batch_size: int) -> dict[str, float]:
    """Depth recovery fitted on the validation split: the bones of the model's own skeletons
    (``Codec25D.fit_bone_ratios``; ``skeleton_scale``: their median ratio to the true bones), then the
    root prior toward the training hands' apparent size (``cliphand.codec``; ``root_prior_weight``:
    how far the bones' reading is kept)."""
    out = dataset_outputs(model, val_set, batch_size, torch.device("cpu"), with_mesh=False, with_text=False,
                          desc="depth recovery")
    joints25d, K, scale, root = (torch.from_numpy(a).double() for a in (
        out["joints25d"], val_set.ann["K"], val_set.ann["scale"], val_set.ann["xyz"][:, 0, 2]))
    ratios = model.codec.fit_bone_ratios(joints25d, K, scale, root)
    skeleton_scale = float((ratios / model.bone_ratios.double()).median())
    model.bone_ratios.copy_(ratios)
    with np.load(PROCESSED / "train.npz") as train:
        train_K, train_scale, train_xyz = (torch.from_numpy(train[k]).double() for k in ("K", "scale", "xyz"))
    mean_log_size = float(log_apparent_size(train_xyz[:, 0, 2], train_K, train_scale).mean())
    estimate = model.codec.root_depth_from_bones(joints25d, K, scale, ratios)
    model.root_prior.copy_(fit_root_prior(estimate, root, K, scale, mean_log_size))
    return {"skeleton_scale": skeleton_scale, "root_prior_weight": float(model.root_prior[1])}


def fit_prior(model: CLIPHand3D, val_set: HandDataset, batch_size: int) -> dict[str, float]:
    """The pose prior (``cliphand.models.prior``): the training hands' principal directions (one per
    pose, not per background version), weighted by how well the network sees each on the
    validation split."""
    joints, verts = training_hands("xyz", "verts")
    out = dataset_outputs(model, val_set, batch_size, torch.device("cpu"), with_text=False, desc="pose prior",
                          with_prior=False)
    return model.prior.fit(joints, verts, (out["joints_cam"], out["verts_cam"]),
                           (val_set.ann["xyz"], val_set.ann["verts"]))


def calibrate(model: CLIPHand3D, val_set: HandDataset, cfg: TrainConfig) -> dict[str, float]:
    """Fitted after training, each on the model the previous ones made: the depth lifter, the
    depth recovery, then the pose prior (on hands placed by it)."""
    report = fit_lifter(model, val_set, cfg)
    return report | fit_depth(model, val_set, cfg.batch_size) | fit_prior(model, val_set, cfg.batch_size)


if __name__ == "__main__":
    run_stage("finetune", partial(train, phase="finetune", register=log_model, calibrate=calibrate))
