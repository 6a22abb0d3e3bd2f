"""The coarse-to-fine mesh hierarchy, built from data (never from MANO files).

Levels of 98, 195, 389 and 778 vertices are nested subsets of the canonical mean training mesh
(``cliphand.meanhand``: averaged in the hand's own frame) chosen by farthest-point sampling (the
authors take every 8th/4th/2nd vertex of the MANO template). Between levels, each finer node is
the inverse-distance blend of its nearest coarser nodes on that mean hand; the first level is
blended from the 21 joints. The 21×778 joint regressor comes from the data when it
ships one, else it is fitted by least squares on the training meshes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from cliphand.files import atomic_path
from cliphand.meanhand import canonical_mean_hand
from cliphand.skeleton import BONES, NUM_JOINTS, NUM_VERTS

LEVELS = (98, 195, 389, 778)
LEVEL_ARRAYS = ("templates", "upsample", "indices")  # one array per level


@dataclass
class MeshHierarchy:
    """Templates and up-sampling matrices of the coarse-to-fine regressor.

    ``templates[l]`` [n_l, 3]: the canonical mean mesh at level ``l``, root-relative, in units of the
    hand's scale. ``upsample[l]`` [n_l, n_{l-1}]: blends the previous level (the 21 joints for ``l = 0``).
    ``indices[l]``: which of the 778 vertices level ``l`` keeps. ``joint_regressor`` [21, 778].
    ``faces`` [F, 3] of the full mesh, when known. ``bone_ratios`` [20]: the mean length of each
    bone (``skeleton.BONES`` order) over the hand's scale, for recovering absolute depth.
    """

    templates: list[np.ndarray]
    upsample: list[np.ndarray]
    indices: list[np.ndarray]
    joint_regressor: np.ndarray
    bone_ratios: np.ndarray
    faces: np.ndarray | None = None

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(t) for t in self.templates)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name (``templates.0``, ``upsample.0``, ``indices.0``, …, ``joint_regressor``,
        ``bone_ratios``, ``faces``): what ``save``, model files and resume keys store."""
        arrays = {f"{name}.{i}": a for name in LEVEL_ARRAYS for i, a in enumerate(getattr(self, name))}
        arrays.update({"joint_regressor": self.joint_regressor, "bone_ratios": self.bone_ratios})
        if self.faces is not None:
            arrays["faces"] = self.faces
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> MeshHierarchy:
        """The inverse of ``arrays``; a KeyError names the first array missing."""
        count = sum(1 for k in arrays if k.startswith("templates."))
        levels = {name: [arrays[f"{name}.{i}"] for i in range(count)] for name in LEVEL_ARRAYS}
        return cls(**levels, joint_regressor=arrays["joint_regressor"], bone_ratios=arrays["bone_ratios"],
                   faces=arrays.get("faces"))

    def save(self, path: Path) -> None:
        """Write to an ``.npz`` file atomically, with the umask's permissions (``files.atomic_path``)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **self.arrays())

    def subset(self, sizes: tuple[int, ...]) -> MeshHierarchy:
        """Only the levels of ``sizes`` (ending at 778), skipped levels' up-sampling composed.

        ``(778,)`` is the direct regression ablation: one level blended from the 21 joints.
        """
        sizes = tuple(sizes)
        if not sizes or sizes[-1] != NUM_VERTS or any(n not in self.sizes for n in sizes) \
                or list(sizes) != sorted(set(sizes)):
            raise ValueError(f"model.mesh.levels: an increasing subset of {self.sizes} ending at {NUM_VERTS}, got {sizes}")
        keep = [self.sizes.index(n) for n in sizes]
        upsample, previous = [], -1
        for level in keep:
            blend = self.upsample[level]
            for skipped in range(level - 1, previous, -1):
                blend = blend @ self.upsample[skipped]  # [n_level, n_skipped] @ [n_skipped, ...]
            upsample.append(blend)
            previous = level
        return MeshHierarchy(
            templates=[self.templates[i] for i in keep], upsample=upsample,
            indices=[self.indices[i] for i in keep], joint_regressor=self.joint_regressor,
            bone_ratios=self.bone_ratios, faces=self.faces,
        )

    @classmethod
    def load(cls, path: Path) -> MeshHierarchy:
        """Read a hierarchy written by ``save`` (arrays only: ``np.load`` refuses pickled objects)."""
        with np.load(path, allow_pickle=False) as z:
            return cls.from_arrays({k: z[k] for k in z.files})


def farthest_point_sampling(points: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Indices of ``n`` points of ``[P, 3]``, each the farthest from those already chosen."""
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = start
    dist = np.linalg.norm(points - points[start], axis=1)
    for i in range(1, n):
        chosen[i] = int(np.argmax(dist))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[i]], axis=1))
    return chosen


def blend_weights(fine: np.ndarray, coarse: np.ndarray, k: int = 3) -> np.ndarray:
    """``[n_fine, n_coarse]`` inverse-distance weights over each fine point's k nearest coarse ones."""
    dist, idx = cKDTree(coarse).query(fine, k=k)
    w = 1.0 / np.maximum(dist, 1e-6)
    w /= w.sum(axis=1, keepdims=True)
    out = np.zeros((len(fine), len(coarse)))
    np.put_along_axis(out, idx, w, axis=1)
    return out


def fit_joint_regressor(verts: np.ndarray, xyz: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Least-squares ``J`` [21, 778] with ``xyz ≈ J @ verts`` over training meshes.

    ``verts`` [N, 778, 3], ``xyz`` [N, 21, 3]. The three coordinates share the weights, so each
    joint is one ridge-regularised system of ``3N`` equations in 778 unknowns.
    """
    A = verts.transpose(0, 2, 1).reshape(-1, verts.shape[1])  # [3N, 778]
    B = xyz.transpose(0, 2, 1).reshape(-1, xyz.shape[1])  # [3N, 21]
    gram = A.T @ A + ridge * np.trace(A.T @ A) / A.shape[1] * np.eye(A.shape[1])
    return np.linalg.solve(gram, A.T @ B).T


def joint_regressor_error_mm(J: np.ndarray, verts: np.ndarray, xyz: np.ndarray) -> float:
    """Mean per-joint distance (mm) between ``J @ verts`` and ``xyz``."""
    return float(np.linalg.norm(np.einsum("jv,nvc->njc", J, verts) - xyz, axis=-1).mean() * 1000)


def build_hierarchy(
    verts: np.ndarray,
    xyz: np.ndarray,
    scale: np.ndarray,
    joint_regressor: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    levels: tuple[int, ...] = LEVELS,
) -> MeshHierarchy:
    """The hierarchy from training meshes ``[N, 778, 3]``, joints ``[N, 21, 3]`` and scales ``[N]``."""
    if verts.shape[1:] != (NUM_VERTS, 3) or xyz.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"build_hierarchy: verts {verts.shape} / xyz {xyz.shape} have wrong shapes")
    if levels[-1] != NUM_VERTS or list(levels) != sorted(levels):
        raise ValueError(f"model.mesh.levels: must increase to {NUM_VERTS}, got {levels}")
    # The mean hand in its own frame, root-relative and in units of the scale: unitless templates.
    canon_j, canon_v = canonical_mean_hand(xyz, verts)
    mean_j, mean_v = (canon_j - canon_j[:1]) / scale.mean(), (canon_v - canon_j[:1]) / scale.mean()

    # Nested subsets from fine to coarse: each level keeps a farthest-point subset of the next.
    indices = [np.arange(NUM_VERTS)]
    for n in reversed(levels[:-1]):
        finer = indices[0]
        indices.insert(0, finer[farthest_point_sampling(mean_v[finer], n)])
    templates = [mean_v[ix] for ix in indices]
    upsample = [blend_weights(templates[0], mean_j)]
    upsample += [blend_weights(f, c) for c, f in zip(templates[:-1], templates[1:])]
    if joint_regressor is None:
        joint_regressor = fit_joint_regressor(verts, xyz)
    parents, children = np.array(BONES).T
    ratios = (np.linalg.norm(xyz[:, parents] - xyz[:, children], axis=-1) / scale[:, None]).mean(0)
    return MeshHierarchy(
        templates=[t.astype(np.float32) for t in templates],
        upsample=[u.astype(np.float32) for u in upsample],
        indices=indices,
        joint_regressor=joint_regressor.astype(np.float32),
        bone_ratios=ratios.astype(np.float32),
        faces=faces,
    )
