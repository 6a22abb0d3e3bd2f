"""params.yaml: the default and the paper preset load; bad values stop with the key named."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cliphand.config import ConfigError, Params, read_params
from cliphand.models.cliphand3d import CLIPHand3D

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_default_params_load():
    params, raw = read_params(ROOT / "params.yaml")
    assert params.data.source == "synthetic" and params.model.image_size == params.preprocess.image_size
    assert raw["pretrain"]["batch_size"] == params.pretrain.batch_size


def test_the_default_text_cache_holds_every_prompt_of_the_default_data():
    """A frozen tower's states are cached per prompt (three per pose); an LRU smaller than the
    training and validation poses' prompts misses about half of each epoch's (4,096 entries did,
    unnoticed, once the default grew to 3,000 poses)."""
    params, _ = read_params(ROOT / "params.yaml")
    assert params.model.text.frozen and params.model.text.cache_size >= 3 * params.data.synthetic.n_train


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda p: p["pretrain"].update(batch_size=-4), "pretrain.batch_size"),
        (lambda p: p["finetune"].update(amp="fp8"), "finetune.amp"),
        (lambda p: p["finetune"].update(epoch_steps=-1), "finetune.epoch_steps"),
        (lambda p: p["pretrain"].update(decay_fraction=0.0), "pretrain.decay_fraction"),
        (lambda p: p["pretrain"].update(label_sigma=0), "pretrain.label_sigma"),
        (lambda p: p["model"]["backbone"].update(nme="x"), "model.backbone.nme"),
        (lambda p: p["model"].update(image_size=100), "model.image_size"),
        (lambda p: p["preprocess"].update(image_size=64), "preprocess.image_size"),
        (lambda p: p["data"].update(source="imagenet"), "data.source"),
        (lambda p: p["prompts"].update(template="poem"), "prompts.template"),
        (lambda p: p["finetune"]["loss"].update(verts=-1.0), "finetune.loss.verts"),
        (lambda p: p["finetune"].update(frozen=["backbone", "head"]), "finetune.frozen"),
        (lambda p: p["zeroshot"].update(batch_sizes=[1]), "zeroshot.batch_sizes"),
    ],
)
def test_bad_params_name_the_key(tmp_path, edit, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        read_params(_write(tmp_path, edit))


def test_stage_stops_at_once_on_bad_params(tmp_path):
    _write(tmp_path, lambda p: p["pretrain"].update(batch_size=0))
    result = subprocess.run(
        [sys.executable, "-m", "cliphand.stages.pretrain"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert "pretrain.batch_size" in result.stderr and "Traceback" not in result.stderr


def test_unknown_backbone_is_an_error_naming_the_key(tmp_path, hierarchy):
    params, _ = read_params(_write(tmp_path, lambda p: p["model"]["backbone"].update(name="resnet9000")))
    with pytest.raises(ValueError, match=r"model\.backbone\.name.*resnet9000"):
        CLIPHand3D(params.model, hierarchy)


def test_paper_preset_loads_and_builds_at_paper_size(tmp_path, hierarchy):
    params, _ = read_params(ROOT / "params.yaml", "paper", ROOT / "presets")
    assert (params.data.source, params.model.image_size, params.model.backbone.name) == ("freihand", 256, "resnet50")
    assert (params.model.text.model, params.model.text.pretrained, params.model.text.frozen) == ("ViT-B-32", "openai", True)
    assert params.pretrain.epoch_steps == params.finetune.epoch_steps == 0  # whole passes over FreiHAND
    model = CLIPHand3D(params.model.offline(), hierarchy)  # offline: the same architecture, no downloads
    import torch

    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 256))
    assert [h.shape[-1] for h in out.heatmaps] == [32, 32, 64] and out.verts25d[-1].shape == (1, 778, 3)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: paper"):
        read_params(ROOT / "params.yaml", "fastest", ROOT / "presets")


def test_the_dataclass_defaults_are_params_yaml():
    """One source of values: code that builds a section in Python gets what the pipeline gets."""
    params, _ = read_params(ROOT / "params.yaml")
    assert dataclasses.asdict(Params()) == dataclasses.asdict(params)


def test_the_template_choices_are_the_templates():
    """``prompts.template``'s Literal (the CLI's choices) names exactly the templates prompts.py defines."""
    from cliphand.config import TEMPLATE_NAMES
    from cliphand.text.prompts import TEMPLATES

    assert sorted(TEMPLATE_NAMES) == sorted(TEMPLATES)
