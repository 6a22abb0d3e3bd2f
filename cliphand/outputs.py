"""The model's outputs over a whole dataset (evaluation, validation, zero-shot): NumPy arrays.

Names: ``outputs`` runs a model over a dataset; ``cliphand.predict`` runs one on photos;
``cliphand.models.export.InferenceModel`` is the image → 2.5D network that both serving and export use.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cliphand.models.cliphand3d import CLIPHand3D


@torch.inference_mode()
def dataset_outputs(
    model: CLIPHand3D,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    with_mesh: bool = True,
    with_text: bool = True,
    workers: int = 0,
    desc: str = "predict",
    with_prior: bool = True,
) -> dict[str, np.ndarray | list]:
    """Camera-space joints/vertices (through the pose prior unless ``with_prior=False``), 2.5D joints,
    pose and (with targets) prompt features.

    Keys: ``joints_cam`` [N, 21, 3], ``verts_cam`` [N, 778, 3] (with_mesh), ``joints25d``,
    ``pose_feats`` [3, N, E], and when the dataset has prompts: ``text_feats`` [3, N, E],
    ``prompts`` (N triples), ``logit_scales`` [3].
    """
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    chunks: dict[str, list] = {}
    prompts: list = []
    for batch in tqdm(loader, desc=desc, unit="batch", leave=False):
        images = batch["image"].to(device)
        out = model(images, batch["K"].to(device), batch["scale"].to(device), with_mesh=with_mesh, with_prior=with_prior)
        parts = {"joints_cam": out.joints_cam, "joints25d": out.joints25d, "pose_feats": torch.stack(out.pose_feats)}
        if with_mesh:
            parts["verts_cam"] = out.verts_cam
        if with_text and "prompts" in batch and model.text is not None:
            axes = batch["prompts"]  # default_collate: 3 lists of B strings
            parts["text_feats"] = torch.stack([model.encode_text(list(p), a) for a, p in enumerate(axes)])
            prompts.extend(zip(*axes))
        for key, value in parts.items():
            chunks.setdefault(key, []).append(value.float().cpu().numpy())
    model.train(was_training)
    result: dict[str, np.ndarray | list] = {
        k: np.concatenate(v, axis=1 if k.endswith("feats") else 0) for k, v in chunks.items()
    }
    if prompts:
        result["prompts"] = prompts
        result["logit_scales"] = np.array([float(s()) for s in model.logit_scales])
    return result

