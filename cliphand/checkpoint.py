"""Training checkpoints: written atomically, read as data only (``torch.load(weights_only=True)``, so
a checkpoint cannot run code), with errors that name the file and the mismatch; and the digests a
checkpoint's resume key records (arrays, weights, the package's source)."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cliphand.files import atomic_path

PACKAGE = Path(__file__).resolve().parent


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and says how to start fresh."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` atomically (``files.atomic_path``): a kill never leaves half a file.

    ``state`` must hold only what ``weights_only`` loading accepts: tensors, numbers, strings,
    None, and lists, tuples and dicts of them (no numpy arrays: see ``trainer._rng_state``).
    """
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; anything that is not plain data is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its central directory comes last
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated, or not written by torch.save); "
                              "delete it to start fresh")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        unsafe = _unsafe_globals(path) if isinstance(e, pickle.UnpicklingError) else []
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: it holds {', '.join(unsafe)}, which loading would have to run (an older "
                "cliphand's or a foreign checkpoint); delete it to start fresh"
            ) from None
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({type(e).__name__}: {first_line(e)}); delete it to start fresh"
        ) from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a cliphand checkpoint (no 'model' entry); delete it to start fresh")
    return state


def _unsafe_globals(path: Path) -> list[str]:
    """What a checkpoint's pickle would call when loaded (read without running it), or [] if unreadable."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return []


def first_line(error: BaseException) -> str:
    """The first line of an exception's message: errors here are one line, torch's often are not."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


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


def digest(arrays: Iterable[tuple[str, np.ndarray | torch.Tensor]]) -> str:
    """A short SHA-256 over named arrays or tensors: names, dtypes, shapes and bytes.

    What a resume key records of the data and the weights: equal digests, equal inputs to the run.
    """
    h = hashlib.sha256()
    for name, value in arrays:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}:{flat.dtype}:{tuple(value.shape)};".encode())
            h.update(flat.view(torch.uint8).numpy())
        else:
            value = np.ascontiguousarray(value)
            h.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
            h.update(value.reshape(-1).view(np.uint8))
    return h.hexdigest()[:16]


def source_digest(package: Path = PACKAGE) -> str:
    """A short SHA-256 of the package's Python sources: the code a checkpoint was written by.

    A hash of the files rather than the git commit: an uncommitted edit changes the run too.
    """
    files = sorted(package.rglob("*.py"))
    return digest((str(f.relative_to(package)), np.frombuffer(f.read_bytes(), np.uint8)) for f in files)
