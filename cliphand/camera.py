"""The pinhole camera: the one projection used by the renderer, the 2.5D codec and the figures."""

from __future__ import annotations

from typing import TypeVar

Array = TypeVar("Array")  # a NumPy array or a torch tensor: the same operators serve both


def project(points: Array, K: Array) -> Array:
    """Camera-space points ``[..., N, 3]`` (x right, y down, z forward) → pixels ``[..., N, 2]``.

    ``K`` is ``[3, 3]`` or batched ``[..., 3, 3]``; pixel ``i`` has its centre at coordinate ``i``.
    """
    uvw = points @ K.swapaxes(-1, -2)  # [..., N, 3]
    return uvw[..., :2] / uvw[..., 2:3]
