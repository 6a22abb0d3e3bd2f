"""Self-contained model files: config, mesh hierarchy and weights in one checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from cliphand.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from cliphand.config import ModelConfig, from_dict
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy


def save_model(model: CLIPHand3D, path: Path) -> None:
    """Write ``model`` so that ``load_model`` rebuilds it without params.yaml or the data."""
    h = model.hierarchy
    save_checkpoint(
        {
            "config": dataclasses.asdict(model.cfg),
            "hierarchy": {
                "templates": h.templates, "upsample": h.upsample, "indices": h.indices,
                "joint_regressor": h.joint_regressor, "bone_ratios": h.bone_ratios, "faces": h.faces,
            },
            "model": model.state_dict(),
        },
        path,
    )


def load_model(path: Path) -> CLIPHand3D:
    """Rebuild a model written by ``save_model`` (on the CPU; move it where it should run)."""
    state = load_checkpoint(path)
    for key in ("config", "hierarchy"):
        if key not in state:
            raise CheckpointError(f"{path}: no {key!r} entry; not a model file written by save_model")
    # The weights come from this file: building must not fetch pretrained ones again.
    cfg = from_dict(ModelConfig, state["config"], "model").offline()
    h = state["hierarchy"]
    hierarchy = MeshHierarchy(
        templates=[np.asarray(t) for t in h["templates"]],
        upsample=[np.asarray(u) for u in h["upsample"]],
        indices=[np.asarray(i) for i in h["indices"]],
        joint_regressor=np.asarray(h["joint_regressor"]),
        bone_ratios=np.asarray(h["bone_ratios"]),
        faces=None if h["faces"] is None else np.asarray(h["faces"]),
    )
    model = CLIPHand3D(cfg, hierarchy)
    load_model_state(model, state["model"], path)
    return model
