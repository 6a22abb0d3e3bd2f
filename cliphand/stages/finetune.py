"""Stage ``finetune``: the mesh regressor and pose head from the pretrained weights, then the model
registered in MLflow (see ``cliphand.stages.train``)."""

from functools import partial

import torch

from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.outputs import fitted_bone_ratios
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


if __name__ == "__main__":
    run_stage("finetune", partial(train, phase="finetune", register=log_model, calibrate=fit_bones))
