"""The embedded default dataset: procedurally generated right hands in FreiHAND's exact layout.

Every pose is a random hand (:mod:`cliphand.data.handmodel`: shape, joint angles, a global
rotation from :func:`sample_rotation`) with its forearm leaving the frame, seen by a random
FreiHAND-like camera, rendered once (:mod:`cliphand.data.render`) and composited over random
backgrounds (photographs and procedural textures), sometimes behind objects in front of the
hand: four versions for the training split (image ``pose + P * version``), one for the
evaluation split. The forearm and the objects are drawn, never annotated; the mask is the hand's
visible part before objects cover it. Annotations follow
:mod:`cliphand.data.layout`; ``mano.json`` holds this hand model's parameters in MANO's slots
(16 x 3 rotation vectors, 10 shape coefficients, 3 translation), not MANO parameters:

* pose [0:48]: the global rotation (hand frame to camera), then the 15 finger bones' rotations
  relative to their parent, in hand-frame axes, bones in joint order (thumb CMC, MCP, IP, index
  MCP, PIP, DIP, ..., little DIP);
* shape [48:58]: ``handmodel.BETA_NAMES`` coefficients in [-1, 1];
* translation [58:61]: the wrist's camera-space position, meters.

Each pose draws from its own generator seeded by ``(seed, split, pose)``, so output does not
depend on the number of workers; annotation files are byte-identical for the same seed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from cliphand import viz
from cliphand.camera import project
from cliphand.config import SYNTHETIC_VIEWS, SyntheticConfig
from cliphand.data import handmodel, render
from cliphand.data.layout import (
    HAND_MODEL_FILE,
    SPLITS,
    annotation_path,
    image_path,
    mask_path,
    num_versions,
)
from cliphand.skeleton import NUM_VERTS, SCALE_BONE

FOCAL_RANGE = (450.0, 650.0)  # pixels at 224 px, as in FreiHAND
PRINCIPAL_JITTER = 0.05  # of the image size
FILL_RANGE = (0.35, 0.65)  # projected hand bounding box side / image size: a crop with the wrist and some arm
WRIST_FLEXION_DEG = (-40.0, 40.0)  # the forearm's bend at the wrist: toward the back, the palm
WRIST_DEVIATION_DEG = (-20.0, 20.0)  # and sideways
MARGIN = 0.03  # of the image size, between the hand and the image border
MIN_DEPTH = 0.25  # meters, of the hand's bounding-box centre
JPEG_QUALITY = 90
DECIMALS = 6
_CHUNK = 8  # poses per worker task
# "upright" views, degrees: spin about the fingers' axis (palm, side and back views), tilt of that
# axis toward or away from the camera, and in-plane roll away from fingers-up.
SPIN_RANGE, TILT_RANGE, ROLL_RANGE = 180.0, 40.0, 90.0
# Hand frame → camera with the fingers (hand +y) pointing up (camera -y) and the palm (hand +z)
# facing the camera (camera -z): a half turn about x.
_FINGERS_UP = np.diag([1.0, -1.0, -1.0])

# One pose to generate: root, seed, split, pose, poses in the split, image size, views.
_Job = tuple[Path, int, str, int, int, int, str]


def sample_rotation(rng: np.random.Generator, views: str = "upright") -> np.ndarray:
    """The global rotation, hand frame → camera, [3, 3].

    ``any``: uniform over SO(3), including views along the fingers that hide them. ``upright``:
    FreiHAND-like, a hand held up in front of the camera (any spin about the fingers' axis, a tilt
    of up to TILT_RANGE and an in-plane roll of up to ROLL_RANGE degrees).
    """
    if views == "any":
        return handmodel.random_rotation(rng)
    if views != "upright":
        raise ValueError(f"views: one of {SYNTHETIC_VIEWS}, got {views!r}")
    spin, tilt, roll = rng.uniform(-1.0, 1.0, 3) * (SPIN_RANGE, TILT_RANGE, ROLL_RANGE)
    in_hand = Rotation.from_euler("yx", [spin, tilt], degrees=True).as_matrix()  # spin, then tilt
    return Rotation.from_euler("z", roll, degrees=True).as_matrix() @ _FINGERS_UP @ in_hand


@dataclass(frozen=True)
class PoseAnnotation:
    """Annotations of one pose, camera space, meters."""

    xyz: np.ndarray  # [21, 3]
    verts: np.ndarray  # [778, 3]
    K: np.ndarray  # [3, 3]
    mano: np.ndarray  # [61]
    scale: float


def sample_intrinsics(rng: np.random.Generator, size: int) -> np.ndarray:
    """A FreiHAND-like pinhole camera for ``size`` px square images, [3, 3]."""
    f = rng.uniform(*FOCAL_RANGE) * size / 224.0
    c = (size - 1) / 2.0 + rng.uniform(-PRINCIPAL_JITTER, PRINCIPAL_JITTER, 2) * size
    return np.array([[f, 0.0, c[0]], [0.0, f, c[1]], [0.0, 0.0, 1.0]])


def place_in_view(points: np.ndarray, K: np.ndarray, size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """A translation [3] that puts ``points`` [N, 3] (camera axes, any origin) in front of the
    camera, filling about FILL_RANGE of the image, at least MARGIN away from its borders."""
    centre = 0.5 * (points.max(0) + points.min(0))
    local = points - centre
    f = K[0, 0]
    lo, hi = MARGIN * size, (1 - MARGIN) * size - 1
    target = min(rng.uniform(*FILL_RANGE) * size, hi - lo)
    where = rng.uniform(0, 1, 2)  # relative position of the box in the free space

    def bbox(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uv = project(local + t, K)
        return uv.min(0), uv.max(0)

    # The projected extent scales about as 1 / depth; iterate for perspective.
    t = np.array([0.0, 0.0, max(f * np.ptp(local[:, :2], axis=0).max() / target, MIN_DEPTH)])
    for _ in range(3):
        uv_lo, uv_hi = bbox(t)
        t[2] = max(t[2] * (uv_hi - uv_lo).max() / target, MIN_DEPTH)
    for _ in range(30):
        for _ in range(3):
            uv_lo, uv_hi = bbox(t)
            goal = lo + where * np.maximum(hi - lo - (uv_hi - uv_lo), 0.0)
            t[:2] += (goal - uv_lo) * t[2] / f
        uv_lo, uv_hi = bbox(t)
        if (uv_lo >= lo).all() and (uv_hi <= hi).all():
            break
        t[2] *= 1.05  # strong perspective kept it from fitting: step back
    else:
        raise RuntimeError("could not fit the hand in the image")
    return t - centre


@dataclass(frozen=True)
class Scene:
    """One pose ready to render: its annotation, and what is drawn: the hand, its skin webs and
    its forearm (the webs and the arm are not annotated)."""

    annotation: PoseAnnotation
    light: render.Lighting
    verts: np.ndarray  # [778 + W + A, 3] camera space: the annotated hand, the webs, the forearm
    faces: np.ndarray  # [F, 3]: the hand's and the webs' first
    albedo: np.ndarray  # [778 + W + A, 3]
    hand_faces: int  # the hand's and the webs' faces: the mask


def make_pose(seed: int, split: str, pose: int, size: int, views: str = "upright") -> Scene:
    """The annotation and the scene of one pose (no rendering)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), pose])
    topo = handmodel.topology()
    betas = handmodel.sample_betas(rng)
    hand = handmodel.pose_hand(betas, handmodel.sample_angles(rng, betas))
    rotation = sample_rotation(rng, views)
    K = sample_intrinsics(rng, size)
    rotated = hand.verts @ rotation.T  # [778, 3], wrist at the origin
    trans = place_in_view(rotated, K, size, rng)
    verts = rotated + trans
    xyz = topo.regressor @ verts
    mano = np.concatenate([handmodel.rotvec(rotation), hand.local_rotvecs[1:].ravel(),
                           hand.betas, trans])
    scale = float(np.linalg.norm(xyz[SCALE_BONE[0]] - xyz[SCALE_BONE[1]]))
    annotation = PoseAnnotation(xyz=xyz, verts=verts, K=K, mano=mano, scale=scale)
    light = render.sample_lighting(rng)
    arm, arm_faces, arm_palmar = handmodel.forearm(betas, *np.radians(rng.uniform(*np.array(
        [WRIST_FLEXION_DEG, WRIST_DEVIATION_DEG]).T)))
    albedo = render.skin_albedo(rng, np.concatenate([topo.palmar, 0.5 * arm_palmar]),  # the inner arm: paler
                                np.concatenate([topo.nail, np.zeros(len(arm))]),
                                np.concatenate([topo.crease, np.zeros(len(arm))]))
    web, web_faces = handmodel.webs()
    return Scene(
        annotation=annotation, light=light,
        verts=np.concatenate([verts, web @ verts, arm @ rotation.T + trans]),
        faces=np.concatenate([topo.faces, web_faces + NUM_VERTS, arm_faces + NUM_VERTS + len(web)]),
        albedo=np.concatenate([albedo[:NUM_VERTS], web @ albedo[:NUM_VERTS], albedo[NUM_VERTS:]]),
        hand_faces=len(topo.faces) + len(web_faces),
    )


def _save_jpeg(array: np.ndarray, path: Path) -> int:
    Image.fromarray(array).save(path, format="JPEG", quality=JPEG_QUALITY)
    return path.stat().st_size


def _render_pose(job: _Job) -> tuple[PoseAnnotation, int]:
    """Generate one pose, write its images and mask; returns its annotation and bytes written."""
    root, seed, split, pose, n_poses, size, views = job
    scene = make_pose(seed, split, pose, size, views)
    annotation = scene.annotation
    split_id = SPLITS.index(split)
    # The hand is rendered once; versions differ in the background and the objects in front.
    color, alpha, hand = render.render(scene.verts, scene.faces, scene.albedo, annotation.K, size,
                                       scene.light, mask_faces=scene.hand_faces)
    effects = render.sample_camera_effects(np.random.default_rng([seed, split_id, pose, 0]), size)
    nbytes = 0
    for version in range(num_versions(split)):
        bg_rng = np.random.default_rng([seed, split_id, pose, 1 + version])
        image = render.composite(color, alpha, render.random_background(bg_rng, size))
        image = render.composite(*render.sample_occluders(bg_rng, hand), image)
        path = image_path(root, split, pose + n_poses * version)
        nbytes += _save_jpeg(render.to_uint8(image, effects), path)
    mask = np.where(hand >= 0.5, 255, 0).astype(np.uint8)
    nbytes += _save_jpeg(mask, mask_path(root, split, pose))
    return annotation, nbytes


def _render_chunk(jobs: list[_Job]) -> list[tuple[PoseAnnotation, int]]:
    return [_render_pose(job) for job in jobs]


def _run_chunks(chunks: list[list[_Job]], workers: int
                ) -> Iterator[list[tuple[PoseAnnotation, int]]]:
    """Chunk results in order, from ``workers`` processes (or this one)."""
    if workers == 1:
        yield from map(_render_chunk, chunks)
        return
    with Pool(min(workers, len(chunks))) as pool:
        yield from pool.imap(_render_chunk, chunks)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename. ``open``
    creates it with the umask's permissions (mkstemp's would be 0600). No fsync: thousands of
    regenerable images would pay for it, and a killed run is regenerated whole by its stage."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_bytes(entries: list[np.ndarray] | list[float]) -> bytes:
    """A JSON list of the entries, rounded to DECIMALS; encoded entry by entry to bound memory."""
    return b"[" + b",".join(
        json.dumps(np.round(np.asarray(e, dtype=np.float64), DECIMALS).tolist(),
                   separators=(",", ":")).encode() for e in entries) + b"]"


_IMAGE_NAME = re.compile(r"(\d{8})\.jpg")


def _remove_stale(folder: Path, count: int) -> None:
    """Delete images numbered ``count`` and above, left by an earlier, larger dataset."""
    for entry in os.scandir(folder):
        m = _IMAGE_NAME.fullmatch(entry.name)
        if m and int(m.group(1)) >= count:
            os.unlink(entry.path)


def _write_hand_model(root: Path) -> int:
    """Faces and joint regressor beside the annotations; returns the file size."""
    topo = handmodel.topology()
    buffer = io.BytesIO()
    np.savez(buffer, faces=topo.faces.astype(np.int32),
             joint_regressor=topo.regressor.astype(np.float64))
    _write_atomic(root / HAND_MODEL_FILE, buffer.getvalue())
    return len(buffer.getvalue())


def _check_params(n_train: int, n_eval: int, image_size: int, seed: int, workers: int,
                  views: str) -> None:
    if views not in SYNTHETIC_VIEWS:
        raise ValueError(f"views: one of {SYNTHETIC_VIEWS}, got {views!r}")
    for name, value, low in (("n_train", n_train, 1), ("n_eval", n_eval, 1),
                             ("image_size", image_size, 32), ("seed", seed, 0),
                             ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        if value < low:
            raise ValueError(f"{name}: must be >= {low}, got {value}")


def generate(root: Path, n_train: int, n_eval: int, image_size: int = 224, seed: int = 0,
             workers: int = 2, progress: bool = True, views: str = "upright") -> dict:
    """Write a synthetic dataset in FreiHAND's layout under ``root``.

    ``n_train`` training poses (4 images each) and ``n_eval`` evaluation poses (1 image each) of
    ``image_size`` px, generated by ``workers`` processes, hands seen from ``views`` (see
    :func:`sample_rotation`). Returns statistics: images, poses,
    seconds, images_per_s and bytes written.
    """
    _check_params(n_train, n_eval, image_size, seed, workers, views)
    start = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"training": n_train, "evaluation": n_eval}
    jobs: list[_Job] = []
    for split, n in counts.items():
        for sub in ("rgb", "mask"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        jobs += [(root, seed, split, pose, n, image_size, views) for pose in range(n)]
    chunks = [jobs[i:i + _CHUNK] for i in range(0, len(jobs), _CHUNK)]
    n_images = sum(n * num_versions(s) for s, n in counts.items())

    results: list[tuple[PoseAnnotation, int]] = []
    with tqdm(total=n_images, unit="img", disable=not progress, desc="synthetic") as bar:
        for chunk, done in zip(chunks, _run_chunks(chunks, workers)):
            results.extend(done)
            bar.update(sum(num_versions(job[2]) for job in chunk))

    nbytes = sum(b for _, b in results)
    offset = 0
    for split, n in counts.items():
        annotations = [a for a, _ in results[offset:offset + n]]
        offset += n
        for name, values in (("xyz", [a.xyz for a in annotations]),
                             ("verts", [a.verts for a in annotations]),
                             ("K", [a.K for a in annotations]),
                             ("mano", [a.mano[None] for a in annotations]),
                             ("scale", [a.scale for a in annotations])):
            data = _json_bytes(values)
            _write_atomic(annotation_path(root, split, name), data)
            nbytes += len(data)
        _remove_stale(root / split / "rgb", n * num_versions(split))
        _remove_stale(root / split / "mask", n)
    nbytes += _write_hand_model(root)
    seconds = time.perf_counter() - start
    return {"images": n_images, "poses": n_train + n_eval, "seconds": round(seconds, 3),
            "images_per_s": round(n_images / seconds, 2), "bytes": nbytes}


def write_contact_sheet(root: Path, path: Path, split: str = "training", count: int = 16,
                        ncols: int = 4, tile: int = 128) -> Path:
    """A PNG contact sheet of the first ``count`` images of a generated split, skeletons drawn."""
    root = Path(root)
    xyz = np.array(json.loads(annotation_path(root, split, "xyz").read_text()))
    K = np.array(json.loads(annotation_path(root, split, "K").read_text()))
    n_poses = len(K)
    images, uvs = [], []
    for i in range(min(count, n_poses * num_versions(split))):
        pose = i % n_poses
        with Image.open(image_path(root, split, i)) as image:
            images.append(image.convert("RGB"))
        uvs.append(project(xyz[pose], K[pose]))
    return viz.save_png(viz.contact_sheet(images, uvs, ncols=ncols, tile=tile), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cliphand.data.synthetic",
        description="Generate the synthetic hand dataset in FreiHAND's layout (defaults: params.yaml's data.synthetic).")
    default = SyntheticConfig()
    parser.add_argument("--out", type=Path, required=True, help="dataset root to write")
    parser.add_argument("--n-train", type=int, default=default.n_train, help="training poses (x4 images)")
    parser.add_argument("--n-eval", type=int, default=default.n_eval, help="evaluation poses")
    parser.add_argument("--size", type=int, default=default.image_size, help="image size, pixels")
    parser.add_argument("--seed", type=int, default=default.seed)
    parser.add_argument("--workers", type=int, default=default.workers)
    parser.add_argument("--views", choices=SYNTHETIC_VIEWS, default=default.views, help="global rotations")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet PNG here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        stats = generate(args.out, args.n_train, args.n_eval, args.size, args.seed, args.workers,
                         progress=not args.quiet, views=args.views)
    except ValueError as e:
        parser.error(str(e))
    if args.sheet:
        write_contact_sheet(args.out, args.sheet)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
