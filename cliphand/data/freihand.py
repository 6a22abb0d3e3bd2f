"""A validating reader of FreiHAND's on-disk layout (real FreiHAND and the synthetic set alike).

Every problem found in the files raises DatasetError with the file, and where it applies the
entry or image index, in its message, e.g. ``.../training_xyz.json[5]: expected shape (21, 3),
got (20, 3)``. Values must be finite, and scales and focal lengths positive (a zero is a number,
but divides by zero later, into a NaN loss). Annotations are checked when the dataset is opened,
except the mesh vertices, which are read on first use (FreiHAND's ``training_verts.json`` is about
1 GB); images (JPEG, PNG, BMP, WEBP or TIFF only: ``IMAGE_FORMATS``) and masks are checked as they
are read.
"""

from __future__ import annotations

import json
import operator
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from cliphand.data.layout import (
    HAND_MODEL_FILE,
    SPLITS,
    annotation_path,
    image_path,
    mask_path,
    num_versions,
)
from cliphand.images import IMAGE_FORMATS
from cliphand.skeleton import NUM_JOINTS, NUM_VERTS


class DatasetError(ValueError):
    """The dataset's files are missing, malformed or inconsistent."""


class DatasetIndexError(DatasetError, IndexError):
    """An image index out of range (also an IndexError, as for any sequence)."""


@dataclass
class Sample:
    """One image with its annotations; arrays are the sample's own copies."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray | None  # (H, W) uint8, 0 or 255; None where the split has no masks
    K: np.ndarray  # (3, 3) float64 intrinsics
    xyz: np.ndarray | None  # (21, 3) float64 joints, meters, camera space; None if unannotated
    verts: np.ndarray | None  # (778, 3) float64 mesh vertices; None if unannotated or not loaded
    scale: float  # middle MCP-PIP bone length, meters
    index: int  # image index: pose + num_poses * version
    pose: int
    version: int


_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file is missing") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON: not UTF-8 text ({e})") from None


def _entry(path: Path, index: int, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """One list entry as a float64 array of the expected shape."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise DatasetError(f"{path}[{index}]: expected shape {shape}, got a ragged nested list"
                           ) from None
    if array.dtype.kind not in "iuf":
        raise DatasetError(f"{path}[{index}]: expected numbers of shape {shape}, "
                           f"got {str(value)[:80]}")
    if array.shape != shape:
        raise DatasetError(f"{path}[{index}]: expected shape {shape}, got {array.shape}")
    return array.astype(np.float64)


def load_annotation(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A JSON list of arrays of ``shape`` as one float64 array ``[N, *shape]``, validated.

    The list is decoded entry by entry so that a huge file (verts) never exists as one nested
    Python list, and so that an error can name the entry. Integers are read as floats: an
    over-long one becomes inf (refused below) instead of hitting Python's limit on integer digits.
    """
    text = _read_text(path)
    decoder = json.JSONDecoder(parse_int=float)

    def malformed(error: json.JSONDecodeError) -> DatasetError:
        return DatasetError(f"{path}: malformed JSON at line {error.lineno}, column "
                            f"{error.colno}: {error.msg}")

    pos = _WHITESPACE.match(text).end()
    if not text.startswith("[", pos):
        raise malformed(json.JSONDecodeError("Expecting a list '['", text, pos))
    pos = _WHITESPACE.match(text, pos + 1).end()
    entries: list[np.ndarray] = []
    closed = text.startswith("]", pos)
    while not closed:
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise malformed(e) from None
        except RecursionError:
            raise DatasetError(f"{path}[{len(entries)}]: malformed JSON: nested too deeply") from None
        entries.append(_entry(path, len(entries), value, shape))
        pos = _WHITESPACE.match(text, pos).end()
        if text.startswith("]", pos):
            closed = True
        elif text.startswith(",", pos):
            pos = _WHITESPACE.match(text, pos + 1).end()
        else:
            raise malformed(json.JSONDecodeError("Expecting ',' delimiter", text, pos))
    pos = _WHITESPACE.match(text, pos + 1).end()
    if pos != len(text):
        raise malformed(json.JSONDecodeError("Extra data", text, pos))
    del text
    array = np.stack(entries) if entries else np.empty((0, *shape))
    finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        at = tuple(int(k) for k in np.argwhere(~np.isfinite(array[i]))[0]) if shape else ()
        raise DatasetError(f"{path}[{i}]: non-finite value {array[i][at]} at position {at}")
    array.flags.writeable = False
    return array


def _require_positive(path: Path, values: np.ndarray, what: str) -> None:
    """``values`` (one per entry of ``path``, finite) must be > 0; the error names the first that
    is not."""
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise DatasetError(f"{path}[{bad[0]}]: {what} must be positive, got {values[bad[0]]:g}")


def _read_image(path: Path, what: str, where: str, mode: str) -> np.ndarray:
    """Decode an image file with PIL in ``mode``; errors name the file and ``where``."""
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            return np.array(image.convert(mode))
    except FileNotFoundError:
        raise DatasetError(f"{path} ({where}): {what} is missing") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"{path} ({where}): cannot decode {what}: {e}") from None


class FreiHAND:
    """One split of a dataset in FreiHAND's layout (see :mod:`cliphand.data.layout`).

    Image ``i`` shows pose ``i % num_poses`` over background version ``i // num_poses``. Opening
    the dataset validates the annotation files and that exactly the images (and masks, where the
    split has a ``mask`` folder) they describe are present. Joint and mesh annotations are
    optional for the evaluation split (FreiHAND ships them in a separate archive): samples and
    bulk accessors then give None, and :meth:`require` raises DatasetError. Mesh vertices are
    read on first use; touch :attr:`verts` before forking data-loader workers so they share one
    copy.
    """

    def __init__(self, root: Path | str, split: str = "training", *, load_verts: bool = True):
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
        self.root = Path(root)
        self.split = split
        self.load_verts = load_verts
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset root does not exist (fetch it with "
                               "`python -m cliphand.data.download --out DIR`)")
        self._K = self._load("K", (3, 3), required=True)
        self.num_poses = len(self._K)
        if self.num_poses == 0:
            raise DatasetError(f"{annotation_path(self.root, split, 'K')}: no entries")
        self._check_camera()
        self._scale = self._load("scale", (), required=True)
        _require_positive(annotation_path(self.root, split, "scale"), self._scale, "scale")
        self._xyz = self._load("xyz", (NUM_JOINTS, 3), required=split == "training")
        self._verts: np.ndarray | None = None
        verts_file = annotation_path(self.root, split, "verts")
        if split == "training" and load_verts and not verts_file.exists():
            raise DatasetError(f"{verts_file}: annotation file is missing")
        self.num_versions = num_versions(split)
        self._check_files(partial(image_path, self.root, split),
                          self.num_poses * self.num_versions, "images", "index")
        self.has_masks = mask_path(self.root, split, 0).parent.is_dir()
        if self.has_masks:
            self._check_files(partial(mask_path, self.root, split), self.num_poses, "masks", "pose")
        self.faces, self.joint_regressor = self._load_hand_model()

    def _load(self, name: str, shape: tuple[int, ...], *, required: bool) -> np.ndarray | None:
        """An annotation file checked for one entry per pose, or None if optional and absent."""
        path = annotation_path(self.root, self.split, name)
        if not required and not path.exists():
            return None
        array = load_annotation(path, shape)
        if name != "K" and len(array) != self.num_poses:
            raise DatasetError(f"{path}: {len(array)} entries, but "
                               f"{annotation_path(self.root, self.split, 'K').name} has "
                               f"{self.num_poses} (one per pose)")
        return array

    def _check_camera(self) -> None:
        """Focal lengths positive and last rows 0, 0, 1, so that projecting never divides by zero."""
        path = annotation_path(self.root, self.split, "K")
        _require_positive(path, self._K[:, 0, 0], "focal length K[0][0]")
        _require_positive(path, self._K[:, 1, 1], "focal length K[1][1]")
        bad = np.flatnonzero((self._K[:, 2] != (0, 0, 1)).any(axis=1))
        if bad.size:
            raise DatasetError(f"{path}[{bad[0]}]: last row of K must be [0, 0, 1], got "
                               f"{self._K[bad[0], 2].tolist()}")

    def _check_files(self, path_of: Callable[[int], Path], count: int, what: str,
                     key: str) -> None:
        """Require exactly the files ``path_of(0 .. count - 1)`` (``key`` names the number) in
        their folder, with no other files of the same kind."""
        folder, suffix = path_of(0).parent, path_of(0).suffix
        if not folder.is_dir():
            raise DatasetError(f"{folder}: {what} folder is missing")
        present = {name for name in os.listdir(folder) if name.endswith(suffix)}
        expected = {path_of(i).name: i for i in range(count)}
        detail = (f"found {len(present)} {what}, expected {count} ("
                  + (f"{self.num_poses} poses x {self.num_versions} versions)" if key == "index"
                     else "one per pose)"))
        missing = next((i for name, i in expected.items() if name not in present), None)
        if missing is not None:
            raise DatasetError(f"{path_of(missing)} ({key} {missing}): missing; {detail}")
        extra = sorted(present.difference(expected))
        if extra:
            raise DatasetError(f"{folder / extra[0]}: unexpected {what[:-1]}; {detail}")

    def _load_hand_model(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Faces and joint regressor from ``hand_model.npz`` (synthetic sets only), checked."""
        path = self.root / HAND_MODEL_FILE
        if not path.exists():
            return None, None
        try:
            with np.load(path) as model:
                faces, regressor = model["faces"], model["joint_regressor"]
        except KeyError as e:
            raise DatasetError(f"{path}: missing array {e}") from None
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path}: cannot read: {e}") from None
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
            raise DatasetError(f"{path}: faces: expected integers of shape (F, 3), got "
                               f"{faces.dtype} {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= NUM_VERTS):
            raise DatasetError(f"{path}: faces: vertex indices outside [0, {NUM_VERTS})")
        if regressor.shape != (NUM_JOINTS, NUM_VERTS):
            raise DatasetError(f"{path}: joint_regressor: expected shape "
                               f"{(NUM_JOINTS, NUM_VERTS)}, got {regressor.shape}")
        return faces.astype(np.int64), regressor.astype(np.float64)

    def __len__(self) -> int:
        return self.num_poses * self.num_versions

    def _index(self, i: int) -> int:
        i = operator.index(i)
        n = len(self)
        if not -n <= i < n:
            raise DatasetIndexError(f"{image_path(self.root, self.split, 0).parent} (index {i}): "
                                    f"out of range for {n} images")
        return i % n

    def pose_of(self, i: int) -> int:
        """Pose (annotation entry) shown by image ``i``."""
        return self._index(i) % self.num_poses

    def version_of(self, i: int) -> int:
        """Background version of image ``i`` (always 0 in the evaluation split)."""
        return self._index(i) // self.num_poses

    def __getitem__(self, i: int) -> Sample:
        i = self._index(i)
        pose, version = i % self.num_poses, i // self.num_poses
        where = f"index {i}"
        image = _read_image(image_path(self.root, self.split, i), "image", where, "RGB")
        mask = None
        if self.has_masks:
            path = mask_path(self.root, self.split, pose)
            gray = _read_image(path, "mask", f"{where}, pose {pose}", "L")
            if gray.shape != image.shape[:2]:
                raise DatasetError(f"{path} ({where}, pose {pose}): mask is {gray.shape}, "
                                   f"image is {image.shape[:2]}")
            mask = np.where(gray > 127, 255, 0).astype(np.uint8)  # undo JPEG's soft edges
        verts = self.verts[pose].copy() if self.load_verts and self.has_verts else None
        return Sample(
            image=image, mask=mask, K=self._K[pose].copy(),
            xyz=self._xyz[pose].copy() if self._xyz is not None else None,
            verts=verts, scale=float(self._scale[pose]), index=i, pose=pose, version=version,
        )

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    @property
    def has_xyz(self) -> bool:
        """Whether the split has joint annotations."""
        return self._xyz is not None

    @property
    def has_verts(self) -> bool:
        """Whether the split has mesh annotations (a file present, loaded or not)."""
        return self._verts is not None or annotation_path(self.root, self.split, "verts").exists()

    @property
    def K(self) -> np.ndarray:
        """Camera intrinsics per pose, [P, 3, 3] (read-only)."""
        return self._K

    @property
    def scale(self) -> np.ndarray:
        """Middle MCP-PIP bone length per pose, [P] (read-only)."""
        return self._scale

    @property
    def xyz(self) -> np.ndarray | None:
        """Joints per pose, [P, 21, 3] (read-only); None where the split has none."""
        return self._xyz

    @property
    def verts(self) -> np.ndarray | None:
        """Mesh vertices per pose, [P, 778, 3] (read-only), read on first access; None where the
        split has none."""
        if self._verts is None and self.has_verts:
            self._verts = self._load("verts", (NUM_VERTS, 3), required=True)
        return self._verts

    def require(self, name: str) -> np.ndarray:
        """The bulk annotation ``name`` ('xyz' or 'verts'); DatasetError naming the missing
        file where the split has none (FreiHAND's evaluation annotations come in their own
        archive)."""
        if name not in ("xyz", "verts"):
            raise ValueError(f"unknown annotation {name!r}; expected 'xyz' or 'verts'")
        array = self.xyz if name == "xyz" else self.verts
        if array is None:
            raise DatasetError(f"{annotation_path(self.root, self.split, name)}: missing; "
                               "fetch FreiHAND_pub_v2_eval.zip for the evaluation annotations")
        return array
