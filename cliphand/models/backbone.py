"""Image backbones: any timm CNN as a feature pyramid (C2..C5), built by name."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from cliphand.checkpoint import load_model_state
from cliphand.config import BackboneConfig

log = logging.getLogger(__name__)


def check_checkpoint(name: str, path: Path) -> None:
    """Fail, listing the keys, unless ``path`` holds every weight of timm's ``name`` (classifier aside).

    timm loads pretrained weights into a ``features_only`` model non-strictly, so a truncated or
    mismatched file would otherwise leave layers silently at random init.
    """
    reference = timm.create_model(name, pretrained=False)
    classifiers = reference.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    reference.reset_classifier(0)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"model.backbone.pretrained: {path} does not hold a state dict")
    state = {k: v for k, v in state.items() if not any(k.startswith(c + ".") for c in classifiers)}
    load_model_state(reference, state, path)


class Backbone(nn.Module):
    """A timm CNN returning its four deepest feature maps, strides 4, 8, 16 and 32."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        if not timm.is_model(cfg.name):
            raise ValueError(f"model.backbone.name: unknown timm model {cfg.name!r}")
        kwargs: dict = {"features_only": True, "out_indices": (1, 2, 3, 4)}
        if cfg.pretrained is None:
            log.info("backbone %s: random initialisation (no pretrained weights)", cfg.name)
        elif cfg.pretrained == "timm":
            log.info("backbone %s: pretrained weights from timm's hub", cfg.name)
            kwargs["pretrained"] = True
        else:
            path = Path(cfg.pretrained)
            if not path.is_file():
                raise FileNotFoundError(f"model.backbone.pretrained: no such file: {path}")
            log.info("backbone %s: pretrained weights from %s", cfg.name, path)
            check_checkpoint(cfg.name, path)
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        self.body = timm.create_model(cfg.name, **kwargs)
        reductions = self.body.feature_info.reduction()
        if reductions != [4, 8, 16, 32]:
            raise ValueError(
                f"model.backbone.name: {cfg.name} has feature strides {reductions}, "
                "a pyramid with strides [4, 8, 16, 32] is needed"
            )
        self.channels: list[int] = self.body.feature_info.channels()

    def forward(self, images: Tensor) -> list[Tensor]:
        """``[B, 3, S, S]`` → ``[C2, C3, C4, C5]`` at ``S/4 .. S/32``."""
        return self.body(images)
