"""The inference-only model: images in, 2.5D joints and vertices out (for MLflow and exports)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cliphand.models.cliphand3d import CLIPHand3D


class InferenceModel(nn.Module):
    """``[B, 3, S, S]`` images in [0, 1] → ``[B, 21 + 778, 3]`` 2.5D joints then vertices.

    One tensor in and one out, so serving tools (MLflow's pyfunc, TorchScript, ONNX) take it as
    is. ``cliphand.geometry.from_25d`` turns the output into camera space given ``K`` and the
    hand's scale; ``.model`` is the full ``CLIPHand3D`` for callers that have them.
    """

    def __init__(self, model: CLIPHand3D) -> None:
        super().__init__()
        model = copy.deepcopy(model).cpu().eval()
        model.text, model.logit_scales = None, None  # inference never reads prompts
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        out = self.model(images)
        return torch.cat([out.joints25d, out.verts25d[-1]], dim=1)
