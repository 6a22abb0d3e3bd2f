"""Model files: data, never code. One safetensors file holds the weights (``model.<name>``) and the
mesh hierarchy's arrays (``hierarchy.<name>``) as tensors, and in its metadata under ``cliphand`` a
JSON description: ``{"format": "cliphand-model", "version": 1, "config": <asdict(ModelConfig)>}``.

Reading one parses a JSON header and copies tensors; nothing in the file is run. The old format (a
pickled dict read with ``torch.load(weights_only=False)``, which runs whatever the pickle says) is
refused by ``load_model``, naming ``cliphand convert``: ``convert_model`` unpickles one file the
user trusts, once, and writes it in this format.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cliphand.checkpoint import CheckpointError, first_line, load_model_state
from cliphand.config import ModelConfig, from_dict
from cliphand.files import atomic_path
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy

FORMAT = "cliphand-model"
VERSION = 1
METADATA_KEY = "cliphand"
# Model config keys added since version 1, with the value that files written before them were built
# with (their defaults in params.yaml may differ): such a file loads as the model it was.
ADDED_KEYS = {"pose_blocks": 0, "depth_mixer_layers": 0}


def save_model(model: CLIPHand3D, path: Path | str) -> None:
    """Write ``model`` so that ``load_model`` rebuilds it without params.yaml or the data (atomically)."""
    arrays = {f"hierarchy.{k}": a for k, a in model.hierarchy.arrays().items()}
    # Copies: safetensors refuses tensors that share memory, and a state dict may hold views.
    tensors = {k: torch.from_numpy(np.array(a, order="C")) for k, a in arrays.items()}
    tensors.update({f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()})
    description = {"format": FORMAT, "version": VERSION, "config": dataclasses.asdict(model.cfg)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(description)})


def load_model(path: Path | str) -> CLIPHand3D:
    """Rebuild a model written by ``save_model`` (on the CPU; move it where it should run)."""
    path = Path(path)
    description, tensors = _read(path)
    try:
        cfg = _config(description["config"])
    except (ValueError, KeyError, TypeError) as e:  # ConfigError is a ValueError
        raise CheckpointError(f"{path}: its model config is not this cliphand's ({first_line(e)})") from None
    model = CLIPHand3D(cfg, _hierarchy(path, tensors))
    load_model_state(model, _weights(tensors), path)
    return model


def load_weights(path: Path | str) -> dict[str, torch.Tensor]:
    """The state dict of a model file, for a model built from params (finetune starts from pretrain's)."""
    return _weights(_read(Path(path))[1])


def convert_model(old: Path | str, new: Path | str | None = None) -> Path:
    """Rewrite a model file of the old, pickled format as a safe one (``new``, by default ``old``
    itself, replaced atomically); returns the file written.

    Unpickling runs code the file names: call this only on a file the user trusts and asked to convert.
    """
    old = Path(old)
    new = old if new is None else Path(new)
    if not old.is_file():
        raise CheckpointError(f"{old}: no such model file")
    if not is_pickle(old):
        raise CheckpointError(f"{old}: not a pickled model file; nothing to convert")
    try:
        state = torch.load(old, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{old}: unreadable ({type(e).__name__}: {first_line(e)})") from None
    try:
        cfg = _config(state["config"])
        h = state["hierarchy"]
        hierarchy = MeshHierarchy(
            templates=[np.asarray(t) for t in h["templates"]], upsample=[np.asarray(u) for u in h["upsample"]],
            indices=[np.asarray(i) for i in h["indices"]], joint_regressor=np.asarray(h["joint_regressor"]),
            bone_ratios=np.asarray(h["bone_ratios"]), faces=None if h["faces"] is None else np.asarray(h["faces"]),
        )
        weights = state["model"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{old}: not a model file of the old format ({first_line(e)})") from None
    model = CLIPHand3D(cfg, hierarchy)
    load_model_state(model, weights, old)
    save_model(model, new)
    return new


def is_pickle(path: Path) -> bool:
    """Whether ``path`` is a pickle: ``torch.save``'s zip archive (``*/data.pkl``) or a bare pickle."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return any(name.endswith(".pkl") for name in z.namelist())
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # PROTO opcode, protocols 2-5


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The description and tensors of a model file, or a CheckpointError in one line naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        if is_pickle(path):
            raise CheckpointError(
                f"{path}: a pickled model file (the old format, which can run code when loaded); "
                f"convert a file you trust with `cliphand convert {path}`"
            ) from None
        raise CheckpointError(f"{path}: not a cliphand model file ({first_line(e)})") from None
    try:
        description = json.loads(metadata[METADATA_KEY])
        found = (description["format"], description["version"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{path}: a safetensors file but not a cliphand model (no {METADATA_KEY!r} description)"
        ) from None
    if found != (FORMAT, VERSION):
        raise CheckpointError(f"{path}: model file format {found[0]!r} version {found[1]!r}; this cliphand reads "
                              f"{FORMAT!r} version {VERSION}")
    return description, tensors


def _config(raw: dict) -> ModelConfig:
    """A file's model config, keys added since it was written at their old values; offline: the
    weights come from the file, so building must not fetch pretrained ones again."""
    return from_dict(ModelConfig, {**ADDED_KEYS, **raw}, "model").offline()


def _hierarchy(path: Path, tensors: dict[str, torch.Tensor]) -> MeshHierarchy:
    arrays = {k.removeprefix("hierarchy."): v.numpy() for k, v in tensors.items() if k.startswith("hierarchy.")}
    try:
        return MeshHierarchy.from_arrays(arrays)
    except KeyError as e:
        raise CheckpointError(f"{path}: its mesh hierarchy lacks {e.args[0]!r}") from None


def _weights(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
