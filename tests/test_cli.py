"""The `cliphand` command: every verb's work, and its user mistakes as one line with a non-zero exit."""

from __future__ import annotations

import argparse
import json
import socket

import pytest
import torch
from conftest import tiny_config
from PIL import Image

from cliphand.cli import build_parser, main
from cliphand.config import PreprocessConfig
from cliphand.data.preprocess import preprocess
from cliphand.data.synthetic import generate
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.models.io import save_model
from cliphand.predict import InputError


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "raw"
    generate(root, n_train=3, n_eval=2, image_size=96, seed=1, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def processed(raw):
    out = raw.parent / "processed"
    preprocess(raw, out, PreprocessConfig(image_size=64, val_fraction=0.34, workers=1))
    return out


@pytest.fixture(scope="module")
def model_file(processed):
    """A tiny untrained model with the synthetic hand's faces, as `dvc repro` would save it."""
    torch.manual_seed(0)
    path = processed.parent / "model.pt"
    save_model(CLIPHand3D(tiny_config(), MeshHierarchy.load(processed / "hierarchy.npz")), path)
    return str(path)


@pytest.fixture(scope="module")
def dead_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    return f"http://127.0.0.1:{port}"


def _fails(argv: list[str], capsys, *needles: str) -> None:
    """``argv`` exits 1 with one line on stderr that names ``needles`` and no traceback."""
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cliphand: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def _usage_error(argv: list[str], capsys, needle: str) -> None:
    """argparse refuses ``argv`` (exit 2), naming the problem."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and needle in capsys.readouterr().err


def test_help_of_every_verb_shows_its_defaults():
    def leaves(parser: argparse.ArgumentParser, name: str):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield name, parser
        for sub in subs:
            for verb, child in sub.choices.items():
                yield from leaves(child, f"{name} {verb}")

    checked = 0
    for name, parser in leaves(build_parser(), "cliphand"):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert f"(default: {action.default})" in text, f"{name} {action.option_strings[0]}"
                checked += 1
    assert checked > 20


def test_predict_a_folder_writes_json_mesh_and_figure(raw, model_file, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    assert main(["predict", str(raw / "evaluation" / "rgb"), "--model", model_file, "--out", str(out)]) == 0
    assert "no --bbox" in caplog.text
    assert len(capsys.readouterr().out.splitlines()) == 2
    for stem in ("00000000", "00000001"):
        data = json.loads((out / f"{stem}.json").read_text())
        assert data["camera"]["intrinsics"] == "default" and len(data["joints_3d_m"]) == 21
        assert "element face" in (out / f"{stem}.ply").read_text()[:300]
        assert (out / f"{stem}.png").stat().st_size > 5000


def test_predict_with_a_box_and_intrinsics(raw, model_file, tmp_path, caplog):
    image = raw / "evaluation" / "rgb" / "00000000.jpg"
    argv = ["predict", str(image), "--model", model_file, "--out", str(tmp_path),
            "--bbox", "10,20,60,40", "--intrinsics", "240,240,47.5,47.5"]
    assert main(argv) == 0 and "no --bbox" not in caplog.text
    data = json.loads((tmp_path / "00000000.json").read_text())
    assert data["crop"] == {"x": 10, "y": 10, "side": 60} and data["camera"]["intrinsics"] == "given"


def test_predict_bad_inputs(raw, model_file, dead_server, tmp_path, capsys):
    image = str(raw / "evaluation" / "rgb" / "00000000.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    _fails(["predict", str(tmp_path / "nowhere.jpg"), "--model", model_file], capsys, "nowhere.jpg", "no such file")
    _fails(["predict", str(tmp_path / "notes.txt"), "--model", model_file], capsys, "notes.txt", "not a readable image")
    _fails(["predict", str(tmp_path / "empty"), "--model", model_file], capsys, "empty", "no images")
    _fails(["predict", image, "--model", str(tmp_path / "missing.pt")], capsys, "missing.pt", "no such model file")
    _fails(["predict", image, "--model", "models:/cliphand3d/latest", "--tracking-uri", dead_server], capsys,
           dead_server, "does not answer")
    _fails(["predict", image, "--model", model_file, "--bbox", "500,500,10,10"], capsys, "outside the 96x96 image")
    _usage_error(["predict", image, "--bbox", "1,2,3"], capsys, "expected four numbers x,y,w,h")
    _usage_error(["predict", image, "--intrinsics", "1,2"], capsys, "expected four numbers fx,fy,cx,cy")


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(InputError):
        main(["--debug", "predict", str(tmp_path / "nowhere.jpg")])


def test_zeroshot_prints_the_demo_and_writes_the_figure(processed, model_file, tmp_path, capsys):
    out = tmp_path / "zs.png"
    argv = ["zeroshot", "--batch-size", "2", "--index", "1", "--model", model_file, "--data", str(processed),
            "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("batch size = 2, id = 1,") and all(f"{a}: " in first for a in "xyz")
    assert out.stat().st_size > 5000


def test_zeroshot_bad_inputs(processed, model_file, tmp_path, capsys):
    data = ["--data", str(processed)]
    _fails(["zeroshot", "--model", str(tmp_path / "missing.pt"), *data], capsys, "missing.pt")
    _fails(["zeroshot", "--model", model_file, "--data", str(tmp_path)], capsys, "eval.npz", "preprocess")
    _fails(["zeroshot", "--model", model_file, *data, "--batch-size", "3"], capsys, "only 2 images")
    _fails(["zeroshot", "--model", model_file, *data, "--batch-size", "2", "--index", "2"], capsys,
           "--index 2", "below --batch-size 2")
    _usage_error(["zeroshot", "--batch-size", "1"], capsys, "must be at least 2")


def test_prompts_of_an_index_and_of_an_image(raw, model_file, capsys):
    assert main(["prompts", "4", "--root", str(raw)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l[:2] for l in lines] == ["x:", "y:", "z:"] and "wrist" in lines[0]
    image = raw / "evaluation" / "rgb" / "00000000.jpg"
    assert main(["prompts", str(image), "--model", model_file]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [l[:2] for l in lines] == ["x:", "y:", "z:"] and "wrist" in lines[2]


def test_prompts_bad_inputs(raw, tmp_path, capsys):
    _fails(["prompts", "0", "--root", str(tmp_path / "nowhere")], capsys, "nowhere")
    _fails(["prompts", "99", "--root", str(raw)], capsys, "99")
    _fails(["prompts", str(tmp_path / "hand.jpg")], capsys, "hand.jpg", "neither an image index nor an image file")
    Image.new("RGB", (8, 8)).save(tmp_path / "hand.png")
    _fails(["prompts", str(tmp_path / "hand.png"), "--model", str(tmp_path / "missing.pt")], capsys, "missing.pt")


def test_data_show_writes_a_contact_sheet(raw, tmp_path):
    out = tmp_path / "sheet.png"
    assert main(["data", "show", "--root", str(raw), "--n", "4", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_data_bad_inputs(tmp_path, capsys):
    _fails(["data", "show", "--root", str(tmp_path / "nowhere")], capsys, "nowhere", "does not exist")
    _usage_error(["data", "show", "--n", "0"], capsys, "must be at least 1")
    _fails(["data", "generate", "--out", str(tmp_path / "gen"), "--n-train", "0"], capsys, "n_train", ">= 1")
    assert not (tmp_path / "gen").exists()


def test_preset_and_report_bad_inputs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _fails(["preset", "nope"], capsys, "presets/nope.yaml", "no such preset")
    _fails(["report", "--check"], capsys, "README.md")
