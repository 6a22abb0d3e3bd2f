"""The synthetic dataset: hand model, renderer, generator output in FreiHAND's layout, figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cliphand import viz
from cliphand.camera import project
from cliphand.config import SyntheticConfig
from cliphand.data import handmodel, render, synthetic
from cliphand.data.layout import (
    ANNOTATIONS,
    HAND_MODEL_FILE,
    SPLITS,
    TRAINING_VERSIONS,
    annotation_path,
    image_path,
    mask_path,
)
from cliphand.skeleton import (
    FINGERTIP_JOINTS,
    FINGERTIP_VERTS,
    NUM_JOINTS,
    NUM_VERTS,
    PARENTS,
)

N_TRAIN, N_EVAL, SIZE, SEED = 4, 2, 96, 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    stats = synthetic.generate(root, N_TRAIN, N_EVAL, image_size=SIZE, seed=SEED, workers=1,
                               progress=False)
    assert stats["images"] == N_TRAIN * len(TRAINING_VERSIONS) + N_EVAL
    assert stats["poses"] == N_TRAIN + N_EVAL
    assert stats["bytes"] > 0 and stats["images_per_s"] > 0
    return root


def _load(root: Path, split: str, name: str) -> np.ndarray:
    return np.array(json.loads(annotation_path(root, split, name).read_text()))


def _n(split: str) -> int:
    return N_TRAIN if split == "training" else N_EVAL


def _uv(xyz: np.ndarray, K: np.ndarray) -> np.ndarray:
    return project(xyz, K)


# --- Hand model ----------------------------------------------------------------------------------

def test_mesh_is_closed_outward_and_skinned() -> None:
    topo = handmodel.topology()
    faces = topo.faces.astype(np.int64)
    assert topo.faces.dtype == np.int32 and faces.min() == 0 and faces.max() == NUM_VERTS - 1
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    keys = edges[:, 0] * NUM_VERTS + edges[:, 1]
    reverse = edges[:, 1] * NUM_VERTS + edges[:, 0]
    assert len(np.unique(keys)) == len(keys), "an edge is used twice in the same direction"
    assert np.isin(reverse, keys).all(), "the mesh has a boundary"
    verts = handmodel.rest_hand(np.zeros(handmodel.NUM_BETAS)).verts
    v0, v1, v2 = (verts[faces[:, i]] for i in range(3))
    volume = np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() / 6
    assert 1e-4 < volume < 1e-3, f"volume {volume} m^3 is not a hand's (or faces point inward)"
    np.testing.assert_allclose(topo.weights.sum(1), 1.0)
    assert (topo.weights >= 0).all()


def test_regressor_rows_and_fingertips() -> None:
    J = handmodel.topology().regressor
    assert J.shape == (NUM_JOINTS, NUM_VERTS)
    np.testing.assert_allclose(J.sum(1), 1.0)
    for joint, vert in zip(FINGERTIP_JOINTS, FINGERTIP_VERTS):
        expected = np.zeros(NUM_VERTS)
        expected[vert] = 1.0
        np.testing.assert_array_equal(J[joint], expected)


def test_regressed_joints_are_the_kinematic_joints_inside_the_hand() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        betas = handmodel.sample_betas(rng)
        angles = handmodel.sample_angles(rng, betas)
        hand = handmodel.pose_hand(betas, angles)
        _, kinematic = handmodel.forward_kinematics(handmodel.rest_hand(betas), angles)
        np.testing.assert_allclose(hand.joints, kinematic, atol=1e-9)
        np.testing.assert_array_equal(hand.joints[list(FINGERTIP_JOINTS)],
                                      hand.verts[list(FINGERTIP_VERTS)])


def test_shapes_vary_within_human_range() -> None:
    rng = np.random.default_rng(1)
    rests = [handmodel.rest_hand(handmodel.sample_betas(rng)) for _ in range(200)]
    hand_length = np.array([np.linalg.norm(r.joints[12] - r.joints[0]) for r in rests])
    assert 0.145 < hand_length.min() and hand_length.max() < 0.215
    assert hand_length.max() - hand_length.min() > 0.03
    lengths = np.array([r.lengths for r in rests])  # [200, 5, 3]
    assert (lengths.std(0) / lengths.mean(0) > 0.03).all(), "every bone length should vary"


def test_pose_sampling_within_limits_and_varied() -> None:
    rng = np.random.default_rng(2)
    shapes = [handmodel.sample_betas(rng) for _ in range(500)]
    deg = np.degrees(np.array([handmodel.sample_angles(rng, b) for b in shapes]))  # [500, 5, 5]
    limits = handmodel.ANGLE_LIMITS_DEG
    assert (deg >= limits[..., 0] - 1e-9).all() and (deg <= limits[..., 1] + 1e-9).all()
    fingers = deg[:, 1:]
    assert fingers[..., 0].min() < 0 and fingers[..., 0].max() > 80  # MCP over its range
    assert fingers[..., 3].max() > 100 and fingers[..., 4].max() > 70
    assert np.corrcoef(fingers[..., 3].ravel(), fingers[..., 4].ravel())[0, 1] > 0.7  # PIP-DIP
    curl = fingers[..., 3].mean(1)
    assert (curl < 20).mean() > 0.1 and (curl > 80).mean() > 0.1, "need open hands and fists"
    pointing = (fingers[:, 0, 3] < 20) & (fingers[:, 1:, 3].min(1) > 60)
    assert pointing.mean() > 0.03
    assert (deg.std(0)[:, [0, 1, 3, 4]] > 2).all()
    # Some poses pinch: the thumb tip reaches the index or middle fingertip.
    tips = np.array([handmodel.pose_hand(b, np.radians(d)).joints[[4, 8, 12]]
                     for b, d in zip(shapes[:200], deg[:200])])
    reach = np.linalg.norm(tips[:, 1:] - tips[:, :1], axis=2).min(1)
    assert (reach < 0.025).mean() > 0.05


def test_random_rotation_is_proper_and_spread() -> None:
    rng = np.random.default_rng(3)
    rots = np.array([handmodel.random_rotation(rng) for _ in range(300)])
    np.testing.assert_allclose(rots @ rots.transpose(0, 2, 1), np.broadcast_to(np.eye(3),
                                                                               rots.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rots), 1.0)
    # Fingers (hand y) point every which way: up, down, left, right, toward and away.
    fingers = rots[:, :, 1]
    assert (fingers.max(0) > 0.9).all() and (fingers.min(0) < -0.9).all()
    np.testing.assert_allclose(handmodel.rotvec(rots[:5]), np.array(
        [handmodel.rotvec(r) for r in rots[:5]]))


def test_upright_views_hold_the_hand_up_in_every_spin() -> None:
    rng = np.random.default_rng(4)
    rots = np.array([synthetic.sample_rotation(rng, "upright") for _ in range(400)])
    np.testing.assert_allclose(np.linalg.det(rots), 1.0)
    fingers, palm = rots[:, :, 1], rots[:, :, 2]  # hand y (fingers), hand z (palm normal)
    assert (fingers[:, 1] <= 1e-9).all()  # never pointing down the image (camera +y)
    assert fingers[:, 1].min() < -0.99 and np.abs(fingers[:, 0]).max() > 0.95  # up and sideways
    # Palm toward and away from the camera both occur.
    assert palm[:, 2].min() < -0.9 and palm[:, 2].max() > 0.9
    with pytest.raises(ValueError, match="views"):
        synthetic.sample_rotation(rng, "sideways")


# --- Renderer ------------------------------------------------------------------------------------

def _box(centre: np.ndarray, half: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed cube, outward faces."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return centre + half * corners, faces


def test_rasterizer_coverage_and_depth_order() -> None:
    K = np.array([[100.0, 0, 49.5], [0, 100.0, 49.5], [0, 0, 1]])
    far_v, far_f = _box(np.array([0.0, 0.0, 1.0]), 0.1)
    near_v, near_f = _box(np.array([0.05, 0.0, 0.5]), 0.02)
    verts = np.concatenate([far_v, near_v])
    faces = np.concatenate([far_f, near_f + len(far_v)])
    frags = render.rasterize(verts, faces, K, 100, 100)
    covered = frags.face >= 0
    # The far cube's front face spans 100 * 0.2 / 0.9 px, the near cube's lies in front of it.
    side = 100 * 0.2 / 0.9
    assert abs(covered.sum() - side**2) / side**2 < 0.1
    row, col = 50, round(49.5 + 100 * 0.05 / 0.48)
    assert frags.face[row, col] >= len(far_f), "the near cube must hide the far one"
    assert frags.face[50, 30] < len(far_f)
    np.testing.assert_allclose(frags.bary[covered].sum(1), 1.0, atol=1e-5)
    assert (frags.bary[covered] >= -1e-6).all()


def test_backgrounds_are_textured_and_seeded() -> None:
    for seed in range(12):
        bg = render.random_background(np.random.default_rng(seed), 64)
        assert bg.shape == (64, 64, 3) and bg.dtype == np.float32
        assert 0 <= bg.min() and bg.max() <= 1
        assert bg.std(axis=(0, 1)).max() > 0.01, "backgrounds must not be flat"
        np.testing.assert_array_equal(bg, render.random_background(np.random.default_rng(seed),
                                                                   64))


def test_the_scene_behind_is_lit_less_than_the_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    lo, hi = render.BACKGROUND_LIGHT
    assert 0 < lo < hi <= 1
    ratios = []
    for seed in range(12):
        lit = render.random_background(np.random.default_rng(seed), 64)
        with monkeypatch.context() as m:
            m.setattr(render, "BACKGROUND_LIGHT", (1.0, 1.0))
            full = render.random_background(np.random.default_rng(seed), 64)
        assert (lit <= full + 1e-6).all() and (lit >= lo * full - 1e-6).all()
        ratios.append(lit.sum() / full.sum())
    assert np.ptp(ratios) > 0.1 * (hi - lo), "the light must vary between images"


# --- Generated dataset ---------------------------------------------------------------------------

def test_layout_and_shapes(dataset: Path) -> None:
    shapes = {"xyz": (NUM_JOINTS, 3), "verts": (NUM_VERTS, 3), "K": (3, 3), "mano": (1, 61),
              "scale": ()}
    for split in SPLITS:
        n = _n(split)
        versions = len(TRAINING_VERSIONS) if split == "training" else 1
        for name in ANNOTATIONS:
            assert _load(dataset, split, name).shape == (n, *shapes[name]), (split, name)
        assert len(list((dataset / split / "rgb").glob("*.jpg"))) == n * versions
        assert len(list((dataset / split / "mask").glob("*.jpg"))) == n
        with Image.open(image_path(dataset, split, n * versions - 1)) as image:
            assert image.size == (SIZE, SIZE) and image.mode == "RGB"
        with Image.open(mask_path(dataset, split, n - 1)) as mask:
            assert mask.size == (SIZE, SIZE) and mask.mode == "L"
    with np.load(dataset / HAND_MODEL_FILE) as model:
        assert model["faces"].dtype == np.int32 and model["faces"].shape[1] == 3
        np.testing.assert_array_equal(model["joint_regressor"], handmodel.topology().regressor)
    assert not list(dataset.glob("*.tmp")) and not list(dataset.glob(".*"))


def test_json_is_rounded(dataset: Path) -> None:
    text = annotation_path(dataset, "training", "verts").read_text()
    assert not re.search(r"\.\d{7,}", text)


def test_joints_regressed_fingertips_and_scale(dataset: Path) -> None:
    J = handmodel.topology().regressor
    for split in SPLITS:
        xyz, verts = _load(dataset, split, "xyz"), _load(dataset, split, "verts")
        np.testing.assert_allclose(xyz, J @ verts, atol=2e-6)
        np.testing.assert_array_equal(xyz[:, list(FINGERTIP_JOINTS)],
                                      verts[:, list(FINGERTIP_VERTS)])
        scale = _load(dataset, split, "scale")
        np.testing.assert_allclose(scale, np.linalg.norm(xyz[:, 9] - xyz[:, 10], axis=1),
                                   atol=2e-6)
        bones = np.linalg.norm(xyz[:, 1:] - xyz[:, list(PARENTS[1:])], axis=2)  # [P, 20]
        assert (bones > 0.005).all() and (bones < 0.1).all()


def test_mano_packing(dataset: Path) -> None:
    mano = _load(dataset, "training", "mano")[:, 0]  # [P, 61]
    xyz = _load(dataset, "training", "xyz")
    np.testing.assert_allclose(mano[:, 58:], xyz[:, 0], atol=2e-6)  # translation = wrist
    assert (np.abs(mano[:, 48:58]) <= 1).all()
    assert (np.linalg.norm(mano[:, :48].reshape(-1, 16, 3), axis=2) <= np.pi + 1e-6).all()


def test_cameras_and_projection(dataset: Path) -> None:
    for split in SPLITS:
        K, xyz = _load(dataset, split, "K"), _load(dataset, split, "xyz")
        verts = _load(dataset, split, "verts")
        f = K[:, 0, 0] * 224 / SIZE
        assert ((f >= 450) & (f <= 650)).all()
        np.testing.assert_array_equal(K[:, 0, 0], K[:, 1, 1])
        assert (np.abs(K[:, :2, 2] - (SIZE - 1) / 2) <= 0.05 * SIZE + 1e-9).all()
        assert (verts[..., 2] > 0.1).all()
        margin = 0.02 * SIZE
        for p in range(len(K)):
            uv = _uv(xyz[p], K[p])
            assert (uv >= margin).all() and (uv <= SIZE - 1 - margin).all()
            extent = np.ptp(_uv(verts[p], K[p]), axis=0).max() / SIZE
            lo, hi = synthetic.FILL_RANGE
            assert lo - 0.05 <= extent <= hi + 0.05


def test_masks_cover_the_hand(dataset: Path) -> None:
    for split in SPLITS:
        K, xyz = _load(dataset, split, "K"), _load(dataset, split, "xyz")
        for p in range(_n(split)):
            mask = np.asarray(Image.open(mask_path(dataset, split, p))) > 127
            assert 0.03 < mask.mean() < 0.7
            # Joints lie inside the hand, so they project onto its silhouette (tips on its edge).
            near = ndimage.binary_dilation(mask, iterations=1)
            col, row = np.round(_uv(xyz[p], K[p])).astype(int).T
            assert near[row, col].mean() >= 0.9


def test_versions_share_the_hand_not_the_background(dataset: Path) -> None:
    for p in range(N_TRAIN):
        mask = np.asarray(Image.open(mask_path(dataset, "training", p))) > 127
        inside = ndimage.binary_erosion(mask, iterations=3)
        outside = ~ndimage.binary_dilation(mask, iterations=3)
        images = [np.asarray(Image.open(image_path(dataset, "training", p + N_TRAIN * v)),
                             dtype=np.float32) for v in range(len(TRAINING_VERSIONS))]
        for other in images[1:]:
            diff = np.abs(other - images[0]).mean(axis=2)
            # JPEG noise only, where no object in front of the hand covers it in either version
            assert np.median(diff[inside]) < 8
            assert diff[outside].mean() > 20


def test_same_seed_same_bytes_any_workers(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthetic.generate(again, N_TRAIN, N_EVAL, image_size=SIZE, seed=SEED, workers=2,
                       progress=False)
    for split in SPLITS:
        for name in ANNOTATIONS:
            a, b = annotation_path(dataset, split, name), annotation_path(again, split, name)
            assert a.read_bytes() == b.read_bytes(), a.name
    for i in (0, N_TRAIN * 4 - 1):
        assert image_path(dataset, "training", i).read_bytes() == \
            image_path(again, "training", i).read_bytes()


def test_other_seed_differs_and_stale_images_go(dataset: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synthetic.generate(other, N_TRAIN + 1, N_EVAL, image_size=SIZE, seed=SEED + 1, workers=1,
                       progress=False)
    synthetic.generate(other, N_TRAIN, N_EVAL, image_size=SIZE, seed=SEED + 1, workers=1,
                       progress=False)
    assert len(list((other / "training" / "rgb").glob("*.jpg"))) == N_TRAIN * 4
    assert len(list((other / "training" / "mask").glob("*.jpg"))) == N_TRAIN
    for name in ANNOTATIONS:
        assert annotation_path(dataset, "training", name).read_bytes() != \
            annotation_path(other, "training", name).read_bytes(), name


@pytest.mark.parametrize("param, kwargs", [
    ("n_train", {"n_train": 0}), ("n_eval", {"n_eval": -1}), ("image_size", {"image_size": 16}),
    ("seed", {"seed": -1}), ("workers", {"workers": 0}), ("n_train", {"n_train": 2.5}),
])
def test_bad_parameters(tmp_path: Path, param: str, kwargs: dict) -> None:
    args = {"n_train": 1, "n_eval": 1, "image_size": 64, "seed": 0, "workers": 1}
    args.update(kwargs)
    with pytest.raises(ValueError, match=param):
        synthetic.generate(tmp_path, progress=False, **args)
    assert not list(tmp_path.iterdir()), "nothing is written for bad parameters"


# --- Figures -------------------------------------------------------------------------------------

def test_skeleton_and_contact_sheet(dataset: Path, tmp_path: Path) -> None:
    K, xyz = _load(dataset, "training", "K"), _load(dataset, "training", "xyz")
    image = np.asarray(Image.open(image_path(dataset, "training", 0)))
    drawn = np.asarray(viz.draw_skeleton(image, _uv(xyz[0], K[0])))
    assert drawn.shape == image.shape and (drawn != image).any(axis=2).mean() > 0.005
    with pytest.raises(ValueError, match="uv"):
        viz.draw_skeleton(image, np.zeros((20, 2)))
    sheet = viz.contact_sheet([image] * 5, [_uv(xyz[0], K[0])] * 4 + [None], ncols=2, tile=40)
    assert sheet.size == (2 * 40 + 3 * 2, 3 * 40 + 4 * 2)
    path = synthetic.write_contact_sheet(dataset, tmp_path / "sheet.png", count=4, tile=32)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (4 * 32 + 5 * 2, 32 + 2 * 2)


def test_the_forearm_leaves_the_frame_but_not_the_mask() -> None:
    """Every real crop shows a forearm leaving the frame: drawn, never annotated."""
    leaves = []
    for pose in range(12):
        scene = synthetic.make_pose(SEED, "training", pose, SIZE)
        assert len(scene.verts) > NUM_VERTS and (scene.verts[:NUM_VERTS] == scene.annotation.verts).all()
        _, alpha, hand = render.render(scene.verts, scene.faces, scene.albedo, scene.annotation.K, SIZE,
                                       scene.light, mask_faces=scene.hand_faces)
        border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
        hand_border = np.concatenate([hand[0], hand[-1], hand[:, 0], hand[:, -1]])
        leaves.append(border.max() > 0.5)
        assert hand_border.max() == 0.0  # the hand keeps its margin; the mask is the hand's alone
        assert (hand <= alpha + 1e-6).all() and alpha.sum() > hand.sum()
    assert np.mean(leaves) >= 0.9


def test_skin_webs_follow_the_pose_between_their_fingers() -> None:
    blend, faces = handmodel.webs()
    assert blend.shape[1] == NUM_VERTS and np.allclose(blend.sum(1), 1.0)
    assert faces.min() == 0 and faces.max() == len(blend) - 1
    topo = handmodel.topology()
    rng = np.random.default_rng(0)
    betas = handmodel.sample_betas(rng)
    hand = handmodel.pose_hand(betas, handmodel.sample_angles(rng, betas))
    web = blend @ hand.verts
    # Each web vertex comes from one chain's skin near its base: close to that chain's knuckle.
    chains = topo.chain[blend.argmax(1)]
    knuckles = hand.joints[[1 + 4 * c + (c == 0) for c in chains]]
    assert (np.linalg.norm(web - knuckles, axis=1) < 0.03).all()


def test_sampled_poses_do_not_pass_through_themselves() -> None:
    for pose in range(150):
        rng = np.random.default_rng([SEED, 0, pose])
        betas = handmodel.sample_betas(rng)
        assert not handmodel.self_intersects(handmodel.rest_hand(betas), handmodel.sample_angles(rng, betas))
    # The index bent across into the middle finger: caught.
    angles = np.zeros((5, 5))
    angles[1, 1] = np.radians(-20.0)  # index toward the little finger
    angles[2, 1] = np.radians(20.0)  # middle toward the thumb
    assert handmodel.self_intersects(handmodel.rest_hand(np.zeros(10)), angles)


def test_photo_backgrounds_ship_with_scikit_image() -> None:
    for name in render.PHOTOS:
        image = render.photo(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 256


def test_objects_in_front_cover_part_of_the_hand_at_most() -> None:
    hand = np.zeros((SIZE, SIZE), np.float32)
    hand[30:70, 35:60] = 1.0
    covered = []
    for seed in range(40):
        color, alpha = render.sample_occluders(np.random.default_rng(seed), hand)
        assert (color <= alpha[..., None] + 1e-5).all()  # premultiplied
        hidden = (alpha * hand).sum() / hand.sum()
        covered.append(hidden)
        assert hidden <= 2 * render._MAX_HIDDEN  # at most two objects, each hiding at most half
    share = np.mean(np.array(covered) > 0)
    assert 0.1 < share < 0.5  # about OCCLUDER_SHARE of the images


def test_skin_scatters_red_past_the_terminator() -> None:
    """Subsurface scattering: with ``wrap`` the side turned from the light is lit, red most."""
    verts, faces, _ = handmodel.forearm(np.zeros(10), 0.0, 0.0)
    verts = verts + np.array([0.0, 0.1, 0.5])  # a vertical tube in front of the camera
    K = np.array([[300.0, 0.0, 48.0], [0.0, 300.0, 48.0], [0.0, 0.0, 1.0]])
    white = np.ones((len(verts), 3))
    lit_from_right = dict(direction=np.array([1.0, 0.0, 0.0]), ambient=0.0, diffuse=1.0, fill=0.0, specular=0.0,
                          shininess=10.0, exposure=1.0)
    dry, _, _ = render.render(verts, faces, white, K, SIZE, render.Lighting(**lit_from_right))
    skin, alpha, _ = render.render(verts, faces, white, K, SIZE, render.Lighting(**lit_from_right, wrap=0.6))
    cols = np.flatnonzero(alpha[SIZE // 2] > 0.99)
    centre, half = (cols[0] + cols[-1]) / 2, (cols[-1] - cols[0]) / 2
    shadow = (SIZE // 2, int(centre - 0.15 * half))  # just past the terminator, turned from the light
    assert dry[shadow].max() == 0.0
    r, g, b = skin[shadow]
    assert r > g > b > 0.0


def test_camera_colour_cast_and_vignette() -> None:
    grey = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    effects = render.CameraEffects(blur=0.0, noise=np.zeros((SIZE, SIZE, 3), np.float32),
                                   gain=np.array([1.1, 1.0, 0.9], np.float32), vignette=0.4)
    out = render.to_uint8(grey, effects).astype(float)
    centre, corner = out[SIZE // 2, SIZE // 2], out[0, 0]
    assert centre[0] / centre[2] == pytest.approx(1.1 / 0.9, rel=0.03)
    assert (corner < 0.85 * centre).all()


def test_the_command_line_defaults_are_the_pipelines(tmp_path, monkeypatch):
    """`python -m cliphand.data.synthetic --out DIR` makes the data set the download stage makes by
    default (params.yaml's data.synthetic, whose defaults ``SyntheticConfig`` holds)."""
    calls = []
    monkeypatch.setattr(synthetic, "generate", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    assert synthetic.main(["--out", str(tmp_path), "--quiet"]) == 0
    (out, n_train, n_eval, size, seed, workers), kwargs = calls[0]
    default = SyntheticConfig()
    assert (n_train, n_eval, size, seed, workers, kwargs["views"]) == (
        default.n_train, default.n_eval, default.image_size, default.seed, default.workers, default.views)
