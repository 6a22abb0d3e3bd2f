"""Stage ``finetune``: the mesh regressor and pose head from the pretrained weights, then the model
registered in MLflow (see ``cliphand.stages.train``)."""

from functools import partial

import numpy as np
import torch

from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.outputs import dataset_outputs, fitted_bone_ratios
from cliphand.paths import PROCESSED
from cliphand.serving import log_model
from cliphand.stages import run_stage
from cliphand.stages.train import train


def fit_bones(model: CLIPHand3D, val_set: HandDataset, batch_size: int) -> dict[str, float]:
    """Depth recovery with the bones of the model's own skeletons (``Codec25D.fit_bone_ratios``),
    fitted on the validation split; ``skeleton_scale``: their median ratio to the true bones."""
    ratios = fitted_bone_ratios(model, val_set, batch_size, torch.device("cpu"))
    skeleton_scale = float((ratios / model.bone_ratios).median())
    model.bone_ratios.copy_(ratios)
    return {"skeleton_scale": skeleton_scale}


def fit_prior(model: CLIPHand3D, val_set: HandDataset, batch_size: int) -> dict[str, float]:
    """The pose prior (``cliphand.models.prior``): the training hands' principal directions (one per
    pose, not per background version), weighted by how well the network sees each on the
    validation split."""
    with np.load(PROCESSED / "train.npz") as train:
        _, first = np.unique(train["pose"], return_index=True)
        joints, verts = train["xyz"][first], train["verts"][first]
    out = dataset_outputs(model, val_set, batch_size, torch.device("cpu"), with_text=False, desc="pose prior",
                          with_prior=False)
    return model.prior.fit(joints, verts, (out["joints_cam"], out["verts_cam"]),
                           (val_set.ann["xyz"], val_set.ann["verts"]))


def calibrate(model: CLIPHand3D, val_set: HandDataset, batch_size: int) -> dict[str, float]:
    """Fitted after training, on the validation split: depth recovery, then the pose prior."""
    return fit_bones(model, val_set, batch_size) | fit_prior(model, val_set, batch_size)


if __name__ == "__main__":
    run_stage("finetune", partial(train, phase="finetune", register=log_model, calibrate=calibrate))
