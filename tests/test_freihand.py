"""The FreiHAND reader on a tiny generated set: contents, index mapping, and bad inputs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cliphand.data.freihand import DatasetError, FreiHAND, Sample
from cliphand.data.layout import annotation_path, image_path, mask_path
from cliphand.data.synthetic import generate

N_TRAIN, N_EVAL, SIZE = 2, 2, 64


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("freihand_generated")
    generate(root, n_train=N_TRAIN, n_eval=N_EVAL, image_size=SIZE, workers=1, progress=False)
    return root


@pytest.fixture
def root(generated: Path, tmp_path: Path) -> Path:
    """A private copy of the generated set, free to damage."""
    return Path(shutil.copytree(generated, tmp_path / "set"))


def _json(path: Path) -> list:
    return json.loads(path.read_text())


def test_counts_and_index_mapping(root: Path) -> None:
    train = FreiHAND(root, "training")
    assert train.num_poses == N_TRAIN and len(train) == 4 * N_TRAIN
    assert [train.pose_of(i) for i in range(len(train))] == [0, 1] * 4
    assert [train.version_of(i) for i in range(len(train))] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert train.pose_of(-1) == N_TRAIN - 1
    evaluation = FreiHAND(root, "evaluation")
    assert len(evaluation) == evaluation.num_poses == N_EVAL
    assert {evaluation.version_of(i) for i in range(N_EVAL)} == {0}


def test_sample_contents(root: Path) -> None:
    ds = FreiHAND(root)
    s = ds[5]
    assert isinstance(s, Sample) and (s.index, s.pose, s.version) == (5, 1, 2)
    assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
    with Image.open(image_path(root, "training", 5)) as im:
        np.testing.assert_array_equal(s.image, np.asarray(im.convert("RGB")))
    assert s.mask.shape == (SIZE, SIZE) and s.mask.dtype == np.uint8
    assert set(np.unique(s.mask)) <= {0, 255}
    np.testing.assert_allclose(s.xyz, _json(annotation_path(root, "training", "xyz"))[1])
    np.testing.assert_allclose(s.verts, _json(annotation_path(root, "training", "verts"))[1])
    np.testing.assert_allclose(s.K, _json(annotation_path(root, "training", "K"))[1])
    assert s.scale == pytest.approx(_json(annotation_path(root, "training", "scale"))[1])
    assert s.K.dtype == s.xyz.dtype == s.verts.dtype == np.float64
    assert ds.xyz.shape == (N_TRAIN, 21, 3) and ds.K.shape == (N_TRAIN, 3, 3)
    assert ds.scale.shape == (N_TRAIN,) and ds.verts.shape == (N_TRAIN, 778, 3)
    assert ds.faces.shape[1] == 3 and ds.joint_regressor.shape == (21, 778)
    s.xyz[:] = 0  # a sample owns its arrays
    assert np.abs(ds.xyz[1]).sum() > 0
    assert len(list(ds)) == len(ds)


def test_without_verts_and_without_eval_annotations(root: Path) -> None:
    assert FreiHAND(root, load_verts=False)[0].verts is None
    annotation_path(root, "evaluation", "xyz").unlink()
    annotation_path(root, "evaluation", "verts").unlink()
    ds = FreiHAND(root, "evaluation")
    s = ds[1]
    assert s.xyz is None and s.verts is None and s.K.shape == (3, 3)
    assert not ds.has_xyz and not ds.has_verts and ds.xyz is None and ds.verts is None
    with pytest.raises(DatasetError, match="evaluation_xyz.json: missing"):
        ds.require("xyz")
    with pytest.raises(DatasetError, match="evaluation_verts.json: missing"):
        ds.require("verts")
    assert FreiHAND(root, "training").require("verts").shape == (N_TRAIN, 778, 3)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere: dataset root does not exist"):
        FreiHAND(tmp_path / "nowhere")


def _edit_json(path: Path, edit: Callable[[list], None]) -> None:
    data = _json(path)
    edit(data)
    path.write_text(json.dumps(data))


def _set_nan(data: list) -> None:
    data[1][20][2] = float("nan")


def _set(*where: int, value: object) -> Callable[[list], None]:
    """An edit setting ``data[where[0]][where[1]]...`` to ``value``."""
    def edit(data: list) -> None:
        *outer, last = where
        for i in outer:
            data = data[i]
        data[last] = value
    return edit


# (damage to the copy, message that must appear when the training split is opened)
OPEN_ERRORS = {
    "missing annotation": (
        lambda r: annotation_path(r, "training", "K").unlink(),
        r"training_K\.json: annotation file is missing"),
    "malformed json": (
        lambda r: annotation_path(r, "training", "xyz").write_text("[[[0.1, 0.2, 0.3],\n  [0.4"),
        r"training_xyz\.json: malformed JSON at line 2, column 7"),
    "length mismatch": (
        lambda r: _edit_json(annotation_path(r, "training", "scale"), list.pop),
        r"training_scale\.json: 1 entries, but training_K\.json has 2"),
    "wrong shape": (
        lambda r: _edit_json(annotation_path(r, "training", "xyz"), lambda d: d[1].pop()),
        r"training_xyz\.json\[1\]: expected shape \(21, 3\), got \(20, 3\)"),
    "not numbers": (
        lambda r: _edit_json(annotation_path(r, "training", "K"),
                             lambda d: d.__setitem__(1, [["a"] * 3] * 3)),
        r"training_K\.json\[1\]: expected numbers of shape \(3, 3\)"),
    "nan": (
        lambda r: _edit_json(annotation_path(r, "training", "xyz"), _set_nan),
        r"training_xyz\.json\[1\]: non-finite value nan at position \(20, 2\)"),
    "deeply nested json": (
        lambda r: annotation_path(r, "training", "xyz").write_text("[" * 100_000),
        r"training_xyz\.json\[0\]: malformed JSON: nested too deeply"),
    "over-long integer": (
        lambda r: annotation_path(r, "training", "scale").write_text("[0.01, " + "1" * 5000 + "]"),
        r"training_scale\.json\[1\]: non-finite value inf"),
    "non-finite scale": (
        lambda r: _edit_json(annotation_path(r, "training", "scale"), _set(1, value=float("inf"))),
        r"training_scale\.json\[1\]: non-finite value inf"),
    "zero scale": (
        lambda r: _edit_json(annotation_path(r, "training", "scale"), _set(1, value=0)),
        r"training_scale\.json\[1\]: scale must be positive, got 0"),
    "negative scale": (
        lambda r: _edit_json(annotation_path(r, "training", "scale"), _set(0, value=-0.02)),
        r"training_scale\.json\[0\]: scale must be positive, got -0\.02"),
    "zero focal length": (
        lambda r: _edit_json(annotation_path(r, "training", "K"), _set(1, 0, 0, value=0.0)),
        r"training_K\.json\[1\]: focal length K\[0\]\[0\] must be positive, got 0"),
    "negative focal length": (
        lambda r: _edit_json(annotation_path(r, "training", "K"), _set(0, 1, 1, value=-500.0)),
        r"training_K\.json\[0\]: focal length K\[1\]\[1\] must be positive, got -500"),
    "K without 0, 0, 1": (
        lambda r: _edit_json(annotation_path(r, "training", "K"), _set(1, 2, value=[0, 0, 0])),
        r"training_K\.json\[1\]: last row of K must be \[0, 0, 1\], got \[0\.0, 0\.0, 0\.0\]"),
    "missing image": (
        lambda r: image_path(r, "training", 6).unlink(),
        r"rgb/00000006\.jpg \(index 6\): missing; found 7 images, expected 8"),
    "extra image": (
        lambda r: shutil.copy(image_path(r, "training", 0), image_path(r, "training", 8)),
        r"rgb/00000008\.jpg: unexpected image; found 9 images, expected 8"),
    "missing mask": (
        lambda r: mask_path(r, "training", 1).unlink(),
        r"mask/00000001\.jpg \(pose 1\): missing; found 1 masks, expected 2 \(one per pose\)"),
}


@pytest.mark.parametrize("case", OPEN_ERRORS)
def test_bad_files_found_on_open(root: Path, case: str) -> None:
    damage, message = OPEN_ERRORS[case]
    damage(root)
    with pytest.raises(DatasetError, match=message):
        FreiHAND(root, "training")


def test_bad_verts_found_on_first_use(root: Path) -> None:
    _edit_json(annotation_path(root, "training", "verts"), lambda d: d[1].pop(0))
    ds = FreiHAND(root)
    with pytest.raises(DatasetError, match=r"training_verts\.json\[1\]: expected shape "
                                           r"\(778, 3\), got \(777, 3\)"):
        ds[0]


def test_corrupt_image(root: Path) -> None:
    path = image_path(root, "training", 7)
    path.write_bytes(path.read_bytes()[:200])
    ds = FreiHAND(root)
    ds[6]
    with pytest.raises(DatasetError, match=r"training/rgb/00000007\.jpg \(index 7\): "
                                           "cannot decode image: "):
        ds[7]


def test_image_in_a_refused_format(root: Path) -> None:
    """Only JPEG, PNG, BMP, WEBP and TIFF are decoded: a GIF (or an EPS, which runs Ghostscript)
    under an image's name is not."""
    path = image_path(root, "training", 3)
    with Image.open(path) as image:
        image.save(path, format="GIF")
    with pytest.raises(DatasetError, match=r"training/rgb/00000003\.jpg \(index 3\): cannot decode image"):
        FreiHAND(root)[3]


def test_corrupt_mask(root: Path) -> None:
    mask_path(root, "training", 1).write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"training/mask/00000001\.jpg \(index 5, pose 1\): "
                                           "cannot decode mask"):
        FreiHAND(root)[5]


def test_index_out_of_range(root: Path) -> None:
    ds = FreiHAND(root)
    for i in (8, -9):
        with pytest.raises(DatasetError, match=rf"training/rgb \(index {i}\): out of range for 8"):
            ds[i]
    with pytest.raises(IndexError):
        ds.pose_of(100)
