"""Every writer: the umask's permissions, and a full disk (a write or an fsync failing with ENOSPC)
leaves the old file whole and no temp file; preprocessing checks the free space before it writes."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from collections import namedtuple
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from conftest import tiny_config
from matplotlib.figure import Figure

from cliphand import figures, viz
from cliphand.checkpoint import save_checkpoint
from cliphand.config import PreprocessConfig
from cliphand.data import preprocess as preprocess_module
from cliphand.data import synthetic
from cliphand.data.synthetic import generate
from cliphand.files import DiskSpaceError, write_text
from cliphand.models import io as model_io
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.io import save_model


@pytest.fixture(scope="module")
def model(hierarchy):
    torch.manual_seed(0)
    return CLIPHand3D(tiny_config(), hierarchy)


def _figure() -> Figure:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], label="line")
    return fig


def _writers(model: CLIPHand3D, hierarchy) -> dict:
    return {
        "text": lambda p: write_text(p, "new"),
        "checkpoint": lambda p: save_checkpoint({"model": model.state_dict(), "step": 1}, p),
        "model": lambda p: save_model(model, p),
        "hierarchy": lambda p: hierarchy.save(p),
        "figure": lambda p: figures.save(_figure(), p),
        "picture": lambda p: viz.save_png(np.zeros((8, 8, 3), np.uint8), p),  # prediction.png, the contact sheet
        "dataset": lambda p: (p.parent.mkdir(parents=True), synthetic._write_atomic(p, b"{}")),  # annotations
    }


WRITERS = ("text", "checkpoint", "model", "hierarchy", "figure")
NAMES = {"text": "m.json", "checkpoint": "pretrain.pt", "model": "model.pt", "hierarchy": "hierarchy.npz",
         "figure": "curves.png", "picture": "prediction.png", "dataset": "training_xyz.json"}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
@pytest.mark.parametrize("writer", (*WRITERS, "picture", "dataset"))
def test_every_writer_gives_the_umasks_permissions(model, hierarchy, tmp_path, writer, umask, mode):
    path = tmp_path / "out" / NAMES[writer]
    old = os.umask(umask)
    try:
        _writers(model, hierarchy)[writer](path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _half_then_enospc(target, *args, **kwargs):
    """A serializer that gets some bytes out before the disk fills up."""
    if isinstance(target, (str, os.PathLike)):
        Path(target).write_bytes(b"half")
    else:
        target.write(b"half")
    _enospc()


# Where each writer's bytes go out: the serializer a full disk would stop half-way.
SERIALIZERS = {
    "checkpoint": (torch, "save", lambda obj, f, *args, **kwargs: _half_then_enospc(f)),
    "model": (model_io, "save_file", lambda tensors, path, metadata=None: _half_then_enospc(path)),
    "hierarchy": (np, "savez", _half_then_enospc),
    "figure": (Figure, "savefig", lambda self, path, **kw: _half_then_enospc(path)),
}


# write_text's bytes go out through its file object: its fsync failing stands for its write failing.
@pytest.mark.parametrize("writer, failing", [(w, "fsync") for w in WRITERS] + [(w, "write") for w in SERIALIZERS])
def test_a_full_disk_leaves_the_old_file_and_no_temp(model, hierarchy, tmp_path, monkeypatch, writer, failing):
    path = tmp_path / NAMES[writer]
    path.write_bytes(b"old")
    write = _writers(model, hierarchy)[writer]
    if failing == "fsync":  # where ENOSPC surfaces with delayed allocation or a network file system
        monkeypatch.setattr(os, "fsync", _enospc)
    else:
        monkeypatch.setattr(*SERIALIZERS[writer])
    with pytest.raises(OSError) as error:
        write(path)
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


Counts = namedtuple("Counts", "total used free")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("full") / "raw"
    generate(root, n_train=3, n_eval=2, image_size=64, seed=1, workers=1, progress=False)
    return root


def test_preprocess_checks_the_free_space_before_writing(raw, tmp_path, monkeypatch):
    out = tmp_path / "processed"
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Counts(10**9, 10**9 - 10**5, 10**5))
    with pytest.raises(DiskSpaceError) as error:
        preprocess_module.preprocess(raw, out, PreprocessConfig(image_size=64, val_fraction=0.34, workers=1))
    assert re.fullmatch(rf"{re.escape(str(out))}: the processed arrays of \d+ images need [\d.]+ GB but only "
                        r"0\.00 GB is free; free some space first", str(error.value))
    assert list(out.iterdir()) == []


def test_a_failed_preprocess_leaves_no_temp_file(raw, tmp_path, monkeypatch):
    out = tmp_path / "processed"
    calls = []

    def resize(reader, index, size):
        calls.append(index)
        if len(calls) > 2:
            _enospc()
        return np.zeros((size, size, 3), np.uint8)

    monkeypatch.setattr(preprocess_module, "_resize", resize)
    with pytest.raises(OSError):
        preprocess_module.preprocess(raw, out, PreprocessConfig(image_size=64, val_fraction=0.34, workers=1))
    assert list(out.iterdir()) == []
