"""Checkpoints: written atomically, read with errors that name the file and the mismatch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and says how to start fresh."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it to start fresh"
        ) from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a cliphand checkpoint (no 'model' entry); delete it to start fresh")
    return state


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path | str) -> None:
    """Strict ``load_state_dict`` whose error lists the missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if hasattr(state[k], "shape") and state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = [
            f"{label} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
            if keys
        ]
        raise CheckpointError(f"{source}: checkpoint does not match the model; " + "; ".join(parts))
    model.load_state_dict(state)
