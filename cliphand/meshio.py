"""Hand meshes as ASCII PLY files: a triangle mesh where the topology is known, points otherwise.

The synthetic hand's faces travel with the model (``MeshHierarchy.faces``); MANO's, for FreiHAND,
are not redistributable, so a FreiHAND-trained model writes its 778 vertices as a point cloud.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cliphand.files import write_text


def write_ply(path: Path | str, verts: np.ndarray, faces: np.ndarray | None = None) -> Path:
    """Write vertices ``[V, 3]`` (and triangles ``[F, 3]``, 0-based) as ASCII PLY, atomically."""
    verts = np.asarray(verts, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts: expected shape [V, 3], got {verts.shape}")
    header = ["ply", "format ascii 1.0", f"element vertex {len(verts)}",
              "property float x", "property float y", "property float z"]
    body = [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    if faces is not None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= len(verts):
            raise ValueError(f"faces: expected triangles [F, 3] indexing {len(verts)} vertices")
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        body += [f"3 {a} {b} {c}" for a, b, c in faces]
    return write_text(path, "\n".join(header + ["end_header"] + body) + "\n")

