"""`cliphand predict`'s parts: crops and their intrinsics, the model run, the files, the figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image

import cliphand
from cliphand import viz
from cliphand.camera import project
from cliphand.crop import (
    Box,
    crop_box,
    crop_image,
    crop_matrix,
    default_intrinsics,
    parse_bbox,
    parse_intrinsics,
)
from cliphand.data import handmodel
from cliphand.data.synthetic import make_pose
from cliphand.images import InputError, image_files, read_image
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.io import save_model
from cliphand.predict import Predictor, predict_files, predict_hand, write_prediction
from cliphand.serving import load_predictor
from cliphand.tracking import TrackingError


@pytest.fixture(scope="module")
def model(hierarchy):
    torch.manual_seed(0)
    return CLIPHand3D(tiny_config(), hierarchy).eval()


@pytest.fixture(scope="module")
def predictor(model):
    return Predictor.from_model(model)


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8))


def test_centre_square_and_squared_boxes():
    assert crop_box(120, 90) == Box(15, 0, 90)
    assert crop_box(90, 120) == Box(0, 15, 90)
    assert crop_box(200, 200, (10, 20, 40, 20)) == Box(10, 10, 40)  # square of the longer side, same centre
    with pytest.raises(ValueError, match="outside the 200x100 image"):
        crop_box(200, 100, (250, 10, 20, 20))


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "1,2,0,4", "1,2,3,-4"])
def test_bad_bbox_text(text):
    with pytest.raises(ValueError, match="bbox"):
        parse_bbox(text)


def test_bad_intrinsics_text():
    with pytest.raises(ValueError, match="fx,fy,cx,cy"):
        parse_intrinsics("500,500,112")
    with pytest.raises(ValueError, match="positive"):
        parse_intrinsics("0,500,112,112")
    assert parse_intrinsics("500,510,100,90")[1, 1] == 510


def test_crop_matrix_follows_a_pixel_through_crop_and_resize():
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[150:160, 230:240] = 255  # a 10 px square centred at (234.5, 154.5)
    box, size = Box(200, 100, 120), 48
    crop = crop_image(Image.fromarray(photo), box, size).astype(float).sum(-1)
    rows, cols = np.mgrid[0:size, 0:size]
    centroid = np.array([(cols * crop).sum(), (rows * crop).sum()]) / crop.sum()
    expected = (crop_matrix(box, size) @ [234.5, 154.5, 1.0])[:2]
    np.testing.assert_allclose(centroid, expected, atol=0.05)


def test_default_intrinsics_centre_the_crop_at_freihand_focal():
    box = Box(50, 30, 448)
    K_crop = crop_matrix(box, 224) @ default_intrinsics(box)
    np.testing.assert_allclose(K_crop, [[550.0, 0, 111.5], [0, 550.0, 111.5], [0, 0, 1]])


def test_prediction_is_the_models_own_pose_in_photo_pixels(model, predictor, photo):
    pred = predict_hand(predictor, photo)
    image = torch.from_numpy(pred.crop).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        out = model(image, torch.from_numpy(pred.K_crop)[None].float(), torch.tensor([pred.hand_scale]))
    np.testing.assert_allclose(pred.joints, out.joints_cam[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pred.verts, out.verts_cam[0].numpy(), rtol=1e-4, atol=1e-5)
    uv25 = out.joints25d[0, :, :2].numpy() * model.cfg.image_size - 0.5  # crop pixels
    np.testing.assert_allclose(project(pred.joints, pred.K_crop), uv25, atol=1e-3)
    # Back in the photo: undo the crop's scale and offset.
    side = pred.box.side / model.cfg.image_size
    np.testing.assert_allclose(pred.joints_uv, (uv25 + 0.5) * side - 0.5 + [pred.box.x, pred.box.y], atol=1e-3)


def test_a_boxed_hand_moves_with_its_box(predictor, photo):
    canvas = Image.new("RGB", (400, 300))
    canvas.paste(photo, (200, 100))
    alone = predict_hand(predictor, photo, bbox=(0, 0, 120, 90))
    placed = predict_hand(predictor, canvas, bbox=(200, 100, 120, 90))
    np.testing.assert_allclose(placed.joints_uv, alone.joints_uv + [200, 100], atol=1e-3)


def test_intrinsics_change_depth_not_the_2d_joints(predictor, photo):
    default = predict_hand(predictor, photo)
    given = predict_hand(predictor, photo, K=np.array([[900.0, 0, 60], [0, 900.0, 45], [0, 0, 1]]))
    np.testing.assert_allclose(given.joints_uv, default.joints_uv, atol=1e-3)
    assert not np.allclose(given.joints[:, 2], default.joints[:, 2])
    assert given.to_json()["camera"]["intrinsics"] == "given"
    assert default.to_json()["camera"]["depth"].startswith("approximate")


def test_outputs_json_mesh_with_faces_and_figure(predictor, photo, tmp_path):
    faces = handmodel.topology().faces
    pred = predict_hand(predictor, photo)
    paths = write_prediction(pred, faces, tmp_path, "hand", {"image": "hand.jpg"})
    data = json.loads(paths["json"].read_text())
    assert data["joint_names"][0] == "wrist" and len(data["joint_names"]) == 21
    assert np.asarray(data["joints_3d_m"]).shape == (21, 3) and np.asarray(data["joints_2d_px"]).shape == (21, 2)
    assert np.asarray(data["vertices_m"]).shape == (778, 3) and data["mesh"] == "hand.ply"
    ply = paths["mesh"].read_text().splitlines()
    assert "element vertex 778" in ply and f"element face {len(faces)}" in ply
    end = ply.index("end_header")
    np.testing.assert_allclose(np.loadtxt(ply[end + 1:end + 779]), pred.verts, atol=1e-6)
    np.testing.assert_array_equal(np.loadtxt(ply[end + 779:], dtype=int)[:, 1:], faces)
    with Image.open(paths["figure"]) as figure:
        assert figure.height == 256 and figure.width > 3 * 256


def test_mesh_without_topology_is_a_point_cloud(predictor, photo, tmp_path):
    paths = write_prediction(predict_hand(predictor, photo), None, tmp_path, "hand", {})
    header = paths["mesh"].read_text().split("end_header")[0]
    assert "element vertex 778" in header and "element face" not in header


def test_skeleton_and_mesh_panels_agree_and_are_not_mirrored():
    """The truth through the figure code: the drawn skeleton lies on the rendered hand, mirrored it does not."""
    ann = make_pose(seed=0, split="evaluation", pose=3, size=96).annotation
    size = 128
    row = np.asarray(viz.prediction_panels(np.zeros((96, 96, 3), np.uint8), ann.K, ann.xyz, ann.verts,
                                           handmodel.topology().faces, size=size))
    gap = (row.shape[1] - 3 * size) // 2
    skeleton, mesh = row[:, :size].sum(-1) > 0, row[:, size + gap:2 * size + gap].sum(-1) > 0  # on black
    skeleton[:24] = mesh[:24] = False  # the labels
    on_hand = (skeleton & mesh).sum() / skeleton.sum()
    mirrored = (skeleton[:, ::-1] & mesh).sum() / skeleton.sum()
    assert on_hand > 0.8 and mirrored < on_hand - 0.3, (on_hand, mirrored)


def test_side_view_puts_depth_to_the_right():
    near_high, far_low = [0.0, -0.05, 0.5], [0.0, 0.05, 0.6]
    dots = np.argwhere(np.asarray(viz.side_view(np.array([near_high, far_low]), None, 64)).sum(-1) < 3 * 235)
    (row_a, col_a), (row_b, col_b) = dots[np.argsort(dots[:, 0])]  # the higher dot first
    assert col_a < 32 < col_b and row_a < 32 < row_b


def test_image_files_and_their_errors(photo, tmp_path):
    photo.save(tmp_path / "b.png")
    photo.save(tmp_path / "a.JPG", format="JPEG")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in image_files([tmp_path])] == ["a.JPG", "b.png"]
    (tmp_path / "fake.png").write_text("not a png")
    with pytest.raises(InputError, match="fake.png: not a readable image"):
        image_files([tmp_path])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no images"):
        image_files([tmp_path / "empty"])
    with pytest.raises(InputError, match="nowhere.jpg: no such file"):
        image_files([tmp_path / "nowhere.jpg"])
    with pytest.raises(InputError, match="notes.txt: not a readable image"):
        read_image(tmp_path / "notes.txt")


def test_same_stems_would_overwrite(predictor, photo, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        photo.save(tmp_path / sub / "hand.png")
    with pytest.raises(InputError, match="'hand'"):
        predict_files(predictor, [tmp_path / "a" / "hand.png", tmp_path / "b" / "hand.png"], tmp_path / "out", "m")


def test_load_from_file_and_its_errors(model, tmp_path):
    with pytest.raises(InputError, match="missing.pt: no such model file"):
        load_predictor(str(tmp_path / "missing.pt"), "sqlite:///unused.db")
    save_model(model, tmp_path / "model.pt")
    loaded = load_predictor(str(tmp_path / "model.pt"), "sqlite:///unused.db")
    assert loaded.image_size == 64 and loaded.faces is None
    np.testing.assert_array_equal(loaded.bone_ratios, model.hierarchy.bone_ratios)


def test_registry_uri_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="no MLflow store at sqlite:///mlflow.db"):
        load_predictor("models:/cliphand3d/latest", "sqlite:///mlflow.db")
    assert not (tmp_path / "mlflow.db").exists()
    with pytest.raises(TrackingError, match="does not answer"):
        load_predictor("models:/cliphand3d/latest", "http://127.0.0.1:9")


@pytest.mark.slow
def test_load_from_the_model_registry(model, predictor, photo, tmp_path, monkeypatch):
    """The finetune stage's registration, then `--model models:/cliphand3d/latest`."""
    import mlflow

    from cliphand.serving import log_model

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri sets it too: restored after the test
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        log_model(model, [{"image": torch.rand(3, 64, 64)}] * 2)
    # The requirements are stated (this package, which pins its own), not inferred by loading the
    # model again in a subprocess: the same list on every machine.
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/cliphand3d/latest"))
    assert requirements.read_text().split() == [f"mlflow=={mlflow.__version__}", f"cliphand=={cliphand.__version__}"]
    with pytest.raises(InputError, match="models:/nothing/latest: not found"):
        load_predictor("models:/nothing/latest", uri)
    registered = predict_hand(load_predictor("models:/cliphand3d/latest", uri), photo)
    np.testing.assert_allclose(registered.joints, predict_hand(predictor, photo).joints, rtol=1e-4, atol=1e-5)


def test_the_predictor_places_hands_with_the_models_fitted_bones(hierarchy, photo, tmp_path):
    """The bone ratios the finetune stage fits (a model buffer) travel in the model file and are the
    ones ``cliphand predict`` lifts with: shorter bones, a nearer hand, the same 2D joints."""
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy).eval()
    before = predict_hand(Predictor.from_model(model), photo)
    model.bone_ratios = model.bone_ratios * 0.8  # a new buffer: nothing else shares it
    after = predict_hand(Predictor.from_model(model), photo)
    np.testing.assert_allclose(after.joints_uv, before.joints_uv, atol=1e-4)
    np.testing.assert_allclose(after.joints[0, 2], 0.8 * before.joints[0, 2], rtol=0.02)
    save_model(model, tmp_path / "model.pt")
    from cliphand.models.io import load_model

    reloaded = predict_hand(Predictor.from_model(load_model(tmp_path / "model.pt")), photo)
    np.testing.assert_allclose(reloaded.joints, after.joints, rtol=1e-5)


def test_the_predictor_places_hands_with_the_models_root_prior(hierarchy, photo, tmp_path):
    """The root prior the finetune stage fits (a model buffer) travels in the model file and is the
    one ``cliphand predict`` lifts with: at weight 0 the root's depth is the prior's apparent size,
    whatever the network draws (the root joint keeps the network's own small offset from it)."""
    from cliphand.models.io import load_model

    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), hierarchy).eval()
    depths = []
    for m in (3.0, 3.5):
        model.root_prior = torch.tensor([m, 0.0])
        hand = predict_hand(Predictor.from_model(model), photo)
        depths.append(hand.joints[0, 2])
    focal = np.sqrt(hand.K_crop[0, 0] * hand.K_crop[1, 1])
    np.testing.assert_allclose(depths[0] - depths[1], focal * hand.hand_scale * (np.exp(-3.0) - np.exp(-3.5)), rtol=1e-5)
    save_model(model, tmp_path / "model.pt")
    reloaded = predict_hand(Predictor.from_model(load_model(tmp_path / "model.pt")), photo)
    np.testing.assert_allclose(reloaded.joints, hand.joints, rtol=1e-6)
