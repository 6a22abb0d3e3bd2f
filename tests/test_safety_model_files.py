"""Model files are data, not code: a pickle is refused unread with one line naming the file and the
way out (`cliphand convert`), which rewrites a trusted old file in the safe format."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from conftest import tiny_config

from cliphand.checkpoint import CheckpointError
from cliphand.cli import main
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.io import load_model, save_model


class Trap:
    """Unpickling this creates ``marker``: what a hostile model file could run instead."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


@pytest.fixture(scope="module")
def model(hierarchy):
    torch.manual_seed(0)
    return CLIPHand3D(tiny_config(), hierarchy).eval()


def _old_format(model: CLIPHand3D, path) -> None:
    """A model file as the pickled format wrote it (``torch.save`` of config, hierarchy and weights)."""
    h = model.hierarchy
    torch.save({
        "config": dataclasses.asdict(model.cfg),
        "hierarchy": {"templates": h.templates, "upsample": h.upsample, "indices": h.indices,
                      "joint_regressor": h.joint_regressor, "bone_ratios": h.bone_ratios, "faces": h.faces},
        "model": model.state_dict(),
    }, path)


def _same_outputs(a: CLIPHand3D, b: CLIPHand3D) -> bool:
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(images).verts25d[-1], b.eval()(images).verts25d[-1])


def test_a_malicious_pickle_is_refused_unread_with_one_line(tmp_path, capsys):
    path, marker = tmp_path / "model.pt", tmp_path / "pwned"
    torch.save({"config": {}, "hierarchy": {}, "model": Trap(str(marker))}, path)
    expected = (f"{path}: a pickled model file (the old format, which can run code when loaded); "
                f"convert a file you trust with `cliphand convert {path}`")
    with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}$"):
        load_model(path)
    assert main(["export", str(path), "--out", str(tmp_path / "model.ts")]) == 1
    assert capsys.readouterr().err == f"cliphand: error: {expected}\n"
    assert not marker.exists()


def test_convert_rewrites_a_trusted_old_file_in_the_safe_format(model, tmp_path, capsys):
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    _old_format(model, old)
    with pytest.raises(CheckpointError, match="a pickled model file"):
        load_model(old)
    assert main(["convert", str(old), str(new)]) == 0
    assert capsys.readouterr().out.startswith(f"{new}: converted from {old}")
    assert _same_outputs(model, load_model(new))
    assert main(["convert", str(old)]) == 0  # in place
    assert _same_outputs(model, load_model(old))
    assert main(["convert", str(new)]) == 1
    assert capsys.readouterr().err == f"cliphand: error: {new}: not a pickled model file; nothing to convert\n"


def test_a_model_file_is_safetensors_with_a_json_description(model, tmp_path):
    from safetensors import safe_open

    save_model(model, tmp_path / "model.pt")
    with safe_open(tmp_path / "model.pt", framework="pt") as f:
        description = f.metadata()["cliphand"]
        keys = set(f.keys())
    assert '"format": "cliphand-model"' in description and '"version": 1' in description
    assert {"hierarchy.templates.0", "hierarchy.bone_ratios", "model.pose_head.heatmap2d.weight"} <= keys


@pytest.mark.parametrize("key", ["pose_blocks", "depth_mixer_layers"])
def test_a_file_written_before_a_config_key_existed_loads_as_the_model_it_was(hierarchy, tmp_path, key):
    """``model.pose_blocks`` (default 2) and ``model.depth_mixer_layers`` came after the format: a
    file without the key holds no blocks, no mixer."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from cliphand.models.io import ADDED_KEYS

    assert ADDED_KEYS[key] == 0
    torch.manual_seed(0)
    old = CLIPHand3D(tiny_config(**{key: 0}), hierarchy).eval()
    save_model(old, tmp_path / "new.pt")
    with safe_open(tmp_path / "new.pt", framework="pt") as f:
        description = json.loads(f.metadata()["cliphand"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del description["config"][key]
    save_file(tensors, tmp_path / "old.pt", metadata={"cliphand": json.dumps(description)})
    loaded = load_model(tmp_path / "old.pt")
    assert getattr(loaded.cfg, key) == 0 and _same_outputs(old, loaded)
