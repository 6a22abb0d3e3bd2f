"""Resume only what matches: a checkpoint resumes a run only with the same params, data, starting
weights and code, and is read as data (a pickle that would run code is refused unread)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_safety_model_files import Trap

from cliphand import checkpoint as checkpoint_module
from cliphand.checkpoint import CheckpointError, load_checkpoint, load_model_state
from cliphand.config import TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.models.io import load_weights, save_model
from cliphand.training.trainer import train_phase

CFG = TrainConfig(epochs=1, batch_size=8, warmup_steps=2, workers=0, checkpoint_every=100)
TEMPLATE = "hand_joints"


def _model(processed: Path, weights: Path | None = None, **overrides) -> CLIPHand3D:
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(**overrides), MeshHierarchy.load(processed / "hierarchy.npz"))
    if weights is not None:  # as the finetune stage starts from models/pretrain.pt
        load_model_state(model, load_weights(weights), weights)
    return model


def _datasets(processed: Path, depth_range: float = 8.0, template: str = TEMPLATE) -> tuple[HandDataset, HandDataset]:
    return HandDataset(processed, "train", depth_range, template), HandDataset(processed, "val", depth_range, template)


def _differing_keys(error: CheckpointError) -> set[str]:
    """The keys a "written by a different run (k: checkpoint a, now b; ...)" error names."""
    return set(re.findall(r"(?:\(|; )([\w.]+): checkpoint ", str(error)))


@pytest.fixture(scope="module")
def pretrained(processed_hands, tmp_path_factory) -> Path:
    """The checkpoint of a finished one-epoch pretraining (kept, as a killed stage leaves it)."""
    path = tmp_path_factory.mktemp("pretrain") / "pretrain.pt"
    train_phase(_model(processed_hands), CFG, "pretrain", *_datasets(processed_hands), path)
    return path


def _changed_data(processed: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "processed"
    shutil.copytree(processed, copy)
    with np.load(copy / "train.npz") as z:
        ann = {k: z[k] for k in z.files}
    ann["scale"] = ann["scale"] * 1.01
    np.savez(copy / "train.npz", **ann)
    return copy


@pytest.mark.parametrize("change, keys", [
    ("nothing", set()),
    ("depth_range", {"model.depth_range"}),
    ("template", {"prompts.template"}),
    ("data", {"data.train"}),
    ("code", {"code"}),
])
def test_a_checkpoint_resumes_only_the_same_run(processed_hands, pretrained, tmp_path, monkeypatch, change, keys):
    path = tmp_path / "pretrain.pt"
    shutil.copy(pretrained, path)
    processed, model_args, data_args = processed_hands, {}, {}
    if change == "depth_range":
        model_args, data_args = {"depth_range": 6.0}, {"depth_range": 6.0}
    elif change == "template":
        data_args = {"template": "terse"}
    elif change == "data":
        processed = _changed_data(processed_hands, tmp_path)
    elif change == "code":  # as an edit to any of the package's sources
        monkeypatch.setattr(checkpoint_module, "source_digest", lambda: "0" * 16)

    def run() -> None:
        train_phase(_model(processed, **model_args), CFG, "pretrain", *_datasets(processed, **data_args), path)

    if not keys:
        run()  # finished: resumes at its last epoch and returns
        return
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: written by a different run \(") as error:
        run()
    assert _differing_keys(error.value) == keys, str(error.value)


def test_finetune_resumes_only_from_the_same_pretrained_weights(processed_hands, tmp_path):
    pretrain, path = tmp_path / "pretrain.pt", tmp_path / "finetune.pt"

    def write_pretrain(seed: int) -> None:
        torch.manual_seed(seed)
        save_model(CLIPHand3D(tiny_config(), MeshHierarchy.load(processed_hands / "hierarchy.npz")), pretrain)

    def finetune() -> None:
        train_phase(_model(processed_hands, pretrain), CFG, "finetune", *_datasets(processed_hands), path)

    write_pretrain(1)
    finetune()
    finetune()  # the same models/pretrain.pt: resumes
    write_pretrain(2)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: written by a different run") as error:
        finetune()
    assert _differing_keys(error.value) == {"initial_weights"}, str(error.value)


def test_a_checkpoint_holds_plain_data_only(pretrained):
    assert torch.serialization.get_unsafe_globals_in_checkpoint(pretrained) == []
    state = torch.load(pretrained, weights_only=True)
    assert isinstance(state["rng"][0]["numpy"]["key"], torch.Tensor)


def test_a_malicious_checkpoint_is_refused_unread(processed_hands, tmp_path):
    path, marker = tmp_path / "pretrain.pt", tmp_path / "pwned"
    torch.save({"model": Trap(str(marker)), "phase": "pretrain"}, path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: refused: it holds builtins\.exec, "):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        train_phase(_model(processed_hands), CFG, "pretrain", *_datasets(processed_hands), path)
    assert not marker.exists()
