"""A procedural articulated right hand: shape, pose and a skinned 778-vertex mesh (numpy).

This is the hand of the synthetic dataset, not MANO. Coordinates are meters in the *hand frame*:
origin at the wrist joint, x toward the thumb (radial), y along the fingers (distal), z out of the
palm (palmar). The frame is right-handed, which makes the hand a right hand.

Skeleton: 21 joints in FreiHAND's order (:mod:`cliphand.skeleton`) and 16 rigid bones: bone 0 is
the palm (pivoting at the wrist), then three bones per finger chain (thumb, index, ..., little),
each pivoting at its proximal joint (``BONE_JOINTS``).

Mesh: one closed superellipse tube for the palm and one closed tube per finger, rings of vertices
around the bones, capped by a centre vertex at the base and an apex vertex at the fingertip. The
five apexes are the fingertip joints and carry FreiHAND's fingertip vertex ids. The mesh follows
the skeleton by linear blend skinning with weights that blend smoothly across each joint, and the
joints are a fixed linear function of the vertices (``Topology.regressor``): fingertips are their
apex vertices, every other joint is the mean of the vertex ring centred on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

from cliphand.skeleton import FINGERTIP_VERTS, NUM_JOINTS, NUM_VERTS

NUM_BONES = 16
NUM_CHAINS = 5  # thumb, index, middle, ring, little
NUM_BETAS = 10

# Joint at which each bone pivots: the palm at the wrist, then each chain's three proximal joints.
BONE_JOINTS = (0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19)

# --- Template hand (an average adult right hand, meters) ------------------------------------------

# First joint of each chain (thumb CMC, finger MCPs).
_CHAIN_BASE = np.array([
    [0.0290, 0.0200, 0.0050],
    [0.0275, 0.0880, 0.0],
    [0.0075, 0.0915, 0.0],
    [-0.0115, 0.0860, 0.0],
    [-0.0290, 0.0775, 0.0],
])
# Bone lengths per chain: metacarpal/proximal, proximal/middle, distal (joint to the tip surface).
_CHAIN_LENGTHS = np.array([
    [0.040, 0.029, 0.025],
    [0.037, 0.021, 0.019],
    [0.040, 0.025, 0.020],
    [0.037, 0.024, 0.020],
    [0.029, 0.017, 0.017],
])
_CHAIN_RADIUS = np.array([0.0128, 0.0104, 0.0107, 0.0102, 0.0091])
# Radius along a chain relative to _CHAIN_RADIUS, at chain positions s = bone + t.
_FINGER_PROFILE = ((-0.15, 0.0, 1.0, 2.0, 2.6), (0.97, 1.0, 0.86, 0.79, 0.76))
_THUMB_PROFILE = ((-0.2, 0.0, 0.45, 1.0, 2.0, 2.6), (0.85, 1.0, 0.90, 0.74, 0.68, 0.66))
# Cross-sections are ellipses, a little wider (x) than thick (z).
_ELLIPSE = (1.08, 0.92)
# Rest splay of the fingers in the palm plane, degrees toward the thumb.
_FINGER_SPLAY_DEG = (6.0, 0.0, -6.0, -13.0)
# Thumb rest direction and the direction its pad faces (orthogonalised against the direction).
_THUMB_DIR = (0.62, 0.74, 0.24)
_THUMB_PAD = (-0.70, 0.0, 0.70)

# Palm tube: levels f (0 = wrist, 1 = knuckle line; f < 0 reaches below the wrist).
_PALM_LEVELS = np.array([-0.14, -0.07, 0.0, 0.25, 0.5, 0.75, 0.92, 1.0])
_PALM_HALF_WIDTH = ((-0.14, 0.0, 0.45, 1.0), (0.0265, 0.0295, 0.0390, 0.0405))
_PALM_HALF_THICK = ((-0.14, 0.0, 0.4, 0.9, 1.0), (0.0140, 0.0138, 0.0138, 0.0120, 0.0095))
_PALM_EXPONENT = 0.7  # superellipse exponent: < 1 gives a rounded box

# Ring sizes and ring positions (bone, t) along each tube, t in bone lengths from the bone's
# proximal joint. The last _CAP_RINGS rings give, instead of t, a polar angle (degrees) on the
# sphere that rounds off the fingertip.
_FINGER_AROUND = 12
_THUMB_AROUND = 14
_PALM_AROUND = 20
_FINGER_RINGS = ((0, -0.15), (0, 0.0), (0, 0.35), (0, 0.7), (1, 0.0), (1, 0.5),
                 (2, 0.0), (2, 0.45), (2, 30.0), (2, 65.0))
_THUMB_RINGS = ((0, -0.2), (0, 0.0), (0, 0.45), (1, 0.0), (1, 0.5),
                (2, 0.0), (2, 0.45), (2, 30.0), (2, 65.0))
_CAP_RINGS = 2  # the last rings of every chain are cap rings
_BLEND = 0.3  # half-width of the skinning blend across a joint, in bone lengths

# --- Shape ---------------------------------------------------------------------------------------

# betas in [-1, 1] scale these factors by 1 + beta * range.
BETA_NAMES = ("scale", "palm width", "palm length", "thickness", "thumb length", "index length",
              "middle length", "ring length", "little length", "distal proportion")
_BETA_RANGE = np.array([0.14, 0.08, 0.07, 0.14, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06])

# --- Pose ----------------------------------------------------------------------------------------

# Five angles per chain: base flexion, base abduction, base twist, middle flexion, distal
# flexion (see chain_rotations). Finger abduction is toward the thumb; thumb flexion is across
# the palm and thumb abduction out of the palm plane. Limits in degrees [chain, angle, (lo, hi)].
ANGLE_NAMES = ("base flexion", "base abduction", "base twist", "middle flexion", "distal flexion")
_FINGER_LIMITS = ((-20, 90), (-20, 20), (-5, 5), (0, 110), (0, 80))
_THUMB_LIMITS = ((-20, 55), (-15, 55), (-15, 35), (-10, 60), (-15, 80))
ANGLE_LIMITS_DEG = np.array([_THUMB_LIMITS] + [_FINGER_LIMITS] * 4, dtype=np.float64)  # [5, 5, 2]


@dataclass(frozen=True)
class Topology:
    """What every hand shares: faces, skinning weights, joint regressor and vertex descriptors.

    Vertex descriptors define the rest mesh from a shape: ``chain`` (-1 palm, 0..4 thumb..little),
    ``bone`` (0..2 along the chain), ``t`` (position along the bone, in bone lengths), ``cap``
    (polar angle of fingertip cap vertices, NaN elsewhere), ``level`` (palm level f), ``phi``
    (angle around the tube) and ``radial`` (0 for the cap centres on the tube axis).
    """

    faces: np.ndarray  # [F, 3] int32, outward (counter-clockwise seen from outside)
    weights: np.ndarray  # [778, 16] skinning weights, rows sum to 1
    regressor: np.ndarray  # [21, 778] joints = regressor @ verts, rows sum to 1
    chain: np.ndarray  # [778] int
    bone: np.ndarray  # [778] int
    t: np.ndarray  # [778]
    cap: np.ndarray  # [778] radians or NaN
    level: np.ndarray  # [778]
    phi: np.ndarray  # [778]
    radial: np.ndarray  # [778] 0 or 1
    palmar: np.ndarray  # [778] in [-1, 1]: how much the surface faces out of the palm
    nail: np.ndarray  # [778] in [0, 1]: fingernail region
    crease: np.ndarray  # [778] in [0, 1]: skin folds at the finger joints and across the palm


@dataclass(frozen=True)
class Hand:
    """One posed hand in the hand frame."""

    verts: np.ndarray  # [778, 3]
    joints: np.ndarray  # [21, 3], equal to regressor @ verts
    local_rotvecs: np.ndarray  # [16, 3] bone rotations relative to the parent, hand-frame axes
    betas: np.ndarray  # [10]
    angles: np.ndarray  # [5, 5] radians


def axis_rotation(axis: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotations about one ``axis`` [3] by angles ``[...]`` radians -> ``[..., 3, 3]``."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def rotvec(r: np.ndarray) -> np.ndarray:
    """Axis-angle vector of rotation matrices ``[..., 3, 3]`` -> ``[..., 3]``."""
    cos = np.clip((np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                     r[..., 1, 0] - r[..., 0, 1]], axis=-1)
    norm = np.linalg.norm(axis, axis=-1, keepdims=True)
    # Near pi the antisymmetric part vanishes: take the axis from the symmetric part instead.
    near_pi = (norm[..., 0] < 1e-6) & (angle > np.pi / 2)
    if np.any(near_pi):
        sym = (r + np.eye(3)) / 2.0
        col = np.argmax(np.diagonal(sym, axis1=-2, axis2=-1), axis=-1)
        alt = np.take_along_axis(sym, col[..., None, None].repeat(3, -1), axis=-1)[..., 0]
        axis = np.where(near_pi[..., None], alt, axis)
        norm = np.linalg.norm(axis, axis=-1, keepdims=True)
    return axis / np.maximum(norm, 1e-12) * angle[..., None]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


_PALM_NORMAL = np.array([0.0, 0.0, 1.0])


def _chain_frames() -> np.ndarray:
    """Rest frames of the five chains, [5, 3, 3]; columns: flexion axis, bone direction, pad."""
    frames = np.empty((NUM_CHAINS, 3, 3))
    d = np.array(_THUMB_DIR) / np.linalg.norm(_THUMB_DIR)
    pad = np.array(_THUMB_PAD) - np.dot(_THUMB_PAD, d) * d
    pad /= np.linalg.norm(pad)
    frames[0] = np.stack([np.cross(d, pad), d, pad], axis=1)
    for c, splay in enumerate(_FINGER_SPLAY_DEG, start=1):
        frames[c] = axis_rotation(_PALM_NORMAL, -np.radians(splay))  # toward +x
    return frames


_FRAMES = _chain_frames()


def _tube_faces(start: int, rings: int, around: int, base: int, apex: int) -> np.ndarray:
    """Faces of a closed tube: ``rings`` rings of ``around`` vertices from ``start``, capped."""
    r, k = np.meshgrid(np.arange(rings - 1), np.arange(around), indexing="ij")
    a = start + r * around + k
    b = start + r * around + (k + 1) % around
    c, d = b + around, a + around
    side = np.concatenate([np.stack([a, c, b], -1), np.stack([a, d, c], -1)]).reshape(-1, 3)
    k = np.arange(around)
    first, last = start + k, start + (rings - 1) * around + k
    base_fan = np.stack([np.full(around, base), first, start + (k + 1) % around], -1)
    apex_fan = np.stack([np.full(around, apex),
                         start + (rings - 1) * around + (k + 1) % around, last], -1)
    return np.concatenate([side, base_fan, apex_fan])


@lru_cache(maxsize=1)
def topology() -> Topology:
    """The fixed topology of the synthetic hand (built once per process)."""
    # Natural order: palm, then the chains thumb..little; each part is its rings, then its base
    # centre, then its apex. The apexes are moved to FreiHAND's fingertip ids at the end.
    cols: dict[str, list[np.ndarray]] = {n: [] for n in
                                         ("chain", "bone", "t", "cap", "level", "phi", "radial")}
    faces, regressor_rings, apexes = [], {}, []
    start = 0

    def add(count: int, chain: int, bone: ArrayLike, t: ArrayLike, cap: ArrayLike,
            level: ArrayLike, phi: ArrayLike, radial: float) -> None:
        """Append ``count`` vertex descriptors (scalars broadcast)."""
        for name, value in (("chain", chain), ("bone", bone), ("t", t), ("cap", cap),
                            ("level", level), ("phi", phi), ("radial", radial)):
            cols[name].append(np.broadcast_to(np.asarray(value, dtype=np.float64), (count,)))

    # Palm: levels of superellipse rings, a centre below the wrist and one at the knuckles.
    n_lev, n = len(_PALM_LEVELS), _PALM_AROUND
    phi = np.tile(2 * np.pi * np.arange(n) / n, n_lev)
    add(n_lev * n, -1, -1, np.nan, np.nan, np.repeat(_PALM_LEVELS, n), phi, 1.0)
    add(1, -1, -1, np.nan, np.nan, _PALM_LEVELS[0], 0.0, 0.0)
    add(1, -1, -1, np.nan, np.nan, _PALM_LEVELS[-1], 0.0, 0.0)
    faces.append(_tube_faces(0, n_lev, n, n_lev * n, n_lev * n + 1))
    wrist_level = int(np.flatnonzero(_PALM_LEVELS == 0.0)[0])
    regressor_rings[0] = np.arange(wrist_level * n, (wrist_level + 1) * n)
    start = n_lev * n + 2

    for chain in range(NUM_CHAINS):
        rings, n = (_THUMB_RINGS, _THUMB_AROUND) if chain == 0 else (_FINGER_RINGS, _FINGER_AROUND)
        bone = np.array([b for b, _ in rings], dtype=np.float64)
        pos = np.array([t for _, t in rings])
        is_cap = np.arange(len(rings)) >= len(rings) - _CAP_RINGS
        t = np.where(is_cap, np.nan, pos)
        cap = np.where(is_cap, np.radians(pos), np.nan)
        phi = np.tile(2 * np.pi * np.arange(n) / n, len(rings))
        add(len(rings) * n, chain, np.repeat(bone, n), np.repeat(t, n), np.repeat(cap, n),
            np.nan, phi, 1.0)
        add(1, chain, 0, rings[0][1], np.nan, np.nan, 0.0, 0.0)  # base centre
        add(1, chain, 2, np.nan, np.pi / 2, np.nan, 0.0, 0.0)  # apex: the fingertip
        base, apex = start + len(rings) * n, start + len(rings) * n + 1
        faces.append(_tube_faces(start, len(rings), n, base, apex))
        for b in range(3):  # the ring at t = 0 of each bone is centred on its joint
            r = next(i for i, (rb, rt) in enumerate(rings) if rb == b and rt == 0.0)
            regressor_rings[1 + 4 * chain + b] = start + r * n + np.arange(n)
        regressor_rings[4 + 4 * chain] = np.array([apex])
        apexes.append(apex)
        start = apex + 1

    natural = {k: np.concatenate(v) for k, v in cols.items()}
    if start != NUM_VERTS:
        raise AssertionError(f"hand template has {start} vertices, expected {NUM_VERTS}")

    # Renumber: apexes take FreiHAND's fingertip ids, the other vertices keep their order.
    new_of_natural = np.full(NUM_VERTS, -1)
    new_of_natural[apexes] = FINGERTIP_VERTS
    rest_natural = np.setdiff1d(np.arange(NUM_VERTS), apexes)
    new_of_natural[rest_natural] = np.setdiff1d(np.arange(NUM_VERTS), FINGERTIP_VERTS)
    natural_of_new = np.argsort(new_of_natural)

    regressor = np.zeros((NUM_JOINTS, NUM_VERTS))
    for joint, ring in regressor_rings.items():
        regressor[joint, new_of_natural[ring]] = 1.0 / len(ring)

    d = {k: v[natural_of_new] for k, v in natural.items()}
    chain = d["chain"].astype(np.int64)
    bone = d["bone"].astype(np.int64)
    weights = _skinning_weights(chain, bone, d["t"])
    palmar, nail, crease = _surface_regions(chain, bone, d["t"], d["cap"], d["level"], d["phi"], d["radial"])
    return Topology(
        faces=new_of_natural[np.concatenate(faces)].astype(np.int32), weights=weights,
        regressor=regressor, chain=chain, bone=bone, t=d["t"], cap=d["cap"],
        level=d["level"], phi=d["phi"], radial=d["radial"], palmar=palmar, nail=nail,
        crease=crease,
    )


def _skinning_weights(chain: np.ndarray, bone: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Blend each chain vertex between the two bones meeting at its nearest joint, [778, 16]."""
    weights = np.zeros((NUM_VERTS, NUM_BONES))
    palm = chain < 0
    weights[palm, 0] = 1.0
    idx = np.flatnonzero(~palm)
    c, b = chain[idx], bone[idx]
    tt = np.where(np.isnan(t[idx]), 1.0, t[idx])  # cap vertices sit at the distal end
    own = 1 + 3 * c + b
    proximal = tt < 0.5
    # Near the proximal joint blend with the parent bone (the palm for the first bone), near the
    # distal joint with the child bone (the distal bone has none).
    other = np.where(proximal, np.where(b == 0, 0, own - 1), own + 1)
    u = np.where(proximal, tt, tt - 1.0)
    w_distal = _smoothstep((u + _BLEND) / (2 * _BLEND))  # weight of the more distal bone
    w_other = np.where(proximal, 1.0 - w_distal, w_distal)
    w_other = np.where(~proximal & (b == 2), 0.0, w_other)
    other = np.where(~proximal & (b == 2), own, other)
    np.add.at(weights, (idx, own), 1.0 - w_other)
    np.add.at(weights, (idx, other), w_other)
    return weights


def _surface_regions(chain: np.ndarray, bone: np.ndarray, t: np.ndarray, cap: np.ndarray,
                     level: np.ndarray, phi: np.ndarray, radial: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Palmar-ness, fingernail and crease weights per vertex, from the rest surface direction."""
    offset_dir = np.stack([np.cos(phi), np.zeros_like(phi), np.sin(phi)], -1)  # [778, 3] local
    frames = np.where((chain >= 0)[:, None, None], _FRAMES[np.maximum(chain, 0)], np.eye(3))
    world = np.einsum("vij,vj->vi", frames, offset_dir)
    palmar = np.where(radial > 0, world[:, 2], 0.0)
    # The nail covers the dorsal side of the distal bone's far half and the cap rings.
    along = np.where(np.isnan(t), 1.0, t)
    dorsal = np.clip((-np.sin(phi) - 0.45) / 0.4, 0.0, 1.0) * (radial > 0)
    nail = dorsal * (chain >= 0) * (bone == 2) * np.clip((along - 0.35) / 0.2, 0.0, 1.0)
    nail = np.where(np.isnan(cap) | (cap < 1.0), nail, 0.0)
    # Folds on the rings centred on the finger joints (deep on the palmar side, wrinkles on the
    # knuckles) and the palm's distal crease.
    joint_ring = (chain >= 0) & (t == 0.0) & (radial > 0)
    crease = joint_ring * np.where(palmar > 0, np.clip(palmar, 0.0, 1.0), 0.5 * np.clip(-palmar, 0.0, 1.0))
    crease = crease + (chain < 0) * (level == 0.75) * 0.7 * np.clip(palmar, 0.0, 1.0)
    return palmar, nail, crease


@dataclass(frozen=True)
class RestHand:
    """A hand of one shape in its rest pose (straight fingers)."""

    joints: np.ndarray  # [21, 3]
    verts: np.ndarray  # [778, 3]
    lengths: np.ndarray  # [5, 3] bone lengths per chain
    radius: np.ndarray  # [5] finger radius per chain


def rest_hand(betas: np.ndarray) -> RestHand:
    """Rest skeleton and mesh of the hand with shape ``betas`` ([10], each in [-1, 1])."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.shape != (NUM_BETAS,):
        raise ValueError(f"betas: expected shape ({NUM_BETAS},), got {betas.shape}")
    f = 1.0 + betas * _BETA_RANGE
    scale, width, length, thick = f[:4]
    finger_len = f[4:9]
    distal = betas[9] * _BETA_RANGE[9]
    topo = topology()

    base = _CHAIN_BASE * np.array([width, length, 1.0]) * scale  # [5, 3]
    lengths = _CHAIN_LENGTHS * finger_len[:, None] * np.array([1 - distal, 1.0, 1 + distal])
    lengths = lengths * scale  # [5, 3]
    radius = _CHAIN_RADIUS * thick * scale  # [5]
    dirs = _FRAMES[:, :, 1]  # [5, 3]
    # Chain joints: base, then along the rest direction. [5, 4, 3]
    offsets = np.concatenate([np.zeros((NUM_CHAINS, 1)), np.cumsum(lengths, axis=1)], axis=1)
    chain_joints = base[:, None, :] + offsets[:, :, None] * dirs[:, None, :]
    joints = np.zeros((NUM_JOINTS, 3))
    joints[1:] = chain_joints.reshape(-1, 3)

    verts = np.empty((NUM_VERTS, 3))
    palm = topo.chain < 0
    verts[palm] = _palm_verts(topo, palm, joints, width * scale, thick * scale, length * scale)

    idx = np.flatnonzero(~palm)
    c, b = topo.chain[idx], topo.bone[idx]
    cap = topo.cap[idx]
    is_cap = ~np.isnan(cap)
    profile_s = b + np.where(is_cap, 1.0, topo.t[idx])
    rel = np.where(c == 0, np.interp(profile_s, *_THUMB_PROFILE),
                   np.interp(profile_s, *_FINGER_PROFILE))
    r = radius[c] * rel
    # Cap rings lie on a sphere of the tip radius that touches the fingertip.
    r_tip = radius[c] * np.where(c == 0, _THUMB_PROFILE[1][-1], _FINGER_PROFILE[1][-1])
    bone_len = lengths[c, b]
    t_cap = 1.0 - r_tip / bone_len * (1.0 - np.sin(np.nan_to_num(cap)))
    t = np.where(is_cap, t_cap, topo.t[idx])
    r = np.where(is_cap, r_tip * np.cos(np.nan_to_num(cap)), r) * topo.radial[idx]
    frame = _FRAMES[c]  # [n, 3, 3]
    centre = chain_joints[c, b] + (t * bone_len)[:, None] * frame[:, :, 1]
    phi = topo.phi[idx]
    ring = (r * _ELLIPSE[0] * np.cos(phi))[:, None] * frame[:, :, 0] + \
           (r * _ELLIPSE[1] * np.sin(phi))[:, None] * frame[:, :, 2]
    verts[idx] = centre + ring
    return RestHand(joints=joints, verts=verts, lengths=lengths, radius=radius)


def _palm_verts(topo: Topology, palm: np.ndarray, joints: np.ndarray, width: float,
                thick: float, length: float) -> np.ndarray:
    """Rest vertices of the palm tube: rings from below the wrist up to the knuckle line."""
    mcp = joints[[17, 13, 9, 5]]  # little..index, increasing x
    # The knuckle line through the finger MCPs, dropping off beyond the outer fingers.
    edge = 0.010 * width
    knuckle_x = np.concatenate([[mcp[0, 0] - edge], mcp[:, 0], [mcp[-1, 0] + edge]])
    knuckle_y = np.concatenate([[mcp[0, 1] - 0.010 * length], mcp[:, 1],
                                [mcp[-1, 1] - 0.008 * length]])
    centre_x = 0.5 * (mcp[0, 0] + mcp[-1, 0])
    f = topo.level[palm]
    phi = topo.phi[palm]
    radial = topo.radial[palm]
    half_w = np.interp(f, *_PALM_HALF_WIDTH) * width
    half_t = np.interp(f, *_PALM_HALF_THICK) * thick
    cx = centre_x * _smoothstep(f)
    cos, sin = np.cos(phi), np.sin(phi)
    x = cx + radial * half_w * np.sign(cos) * np.abs(cos) ** _PALM_EXPONENT
    z = radial * half_t * np.sign(sin) * np.abs(sin) ** _PALM_EXPONENT
    y_top = np.interp(x, knuckle_x, knuckle_y)
    y = np.where(f <= 0, f * _CHAIN_BASE[2, 1] * length, f * y_top)
    # Cap centres bulge out a little so the ends are domes, not flat discs.
    y = y + (1 - radial) * np.where(f <= 0, -0.004, 0.004) * length
    return np.stack([x, y, z], axis=-1)


def chain_rotations(chain: int, angles: np.ndarray) -> np.ndarray:
    """Rotations of a chain's three bones relative to their parents, in hand-frame axes, from
    its five angles: ``[..., 5]`` -> ``[..., 3, 3, 3]`` (bone, then the 3 x 3 matrix).

    Fingers abduct about the palm normal, then flex about their own lateral axis. The thumb's
    saddle joint abducts out of the palm plane, then flexes across the palm about the palm normal
    (together: opposition); its MCP and IP joints flex toward its pad.
    """
    frame = _FRAMES[chain]
    lateral, along, pad = frame[:, 0], frame[:, 1], frame[:, 2]
    flex, abd, twist, flex2, flex3 = np.moveaxis(np.asarray(angles, dtype=np.float64), -1, 0)
    if chain == 0:
        lift = np.cross(along, _PALM_NORMAL)
        base = axis_rotation(_PALM_NORMAL, flex) @ axis_rotation(lift, abd) \
            @ axis_rotation(along, twist)
    else:
        base = axis_rotation(pad, -abd) @ axis_rotation(lateral, flex) \
            @ axis_rotation(along, twist)
    return np.stack([base, axis_rotation(lateral, flex2), axis_rotation(lateral, flex3)], -3)


def _chain_joints(rest: RestHand, chain: int, rotations: np.ndarray) -> np.ndarray:
    """Posed joints of one chain from its bone rotations [..., 3, 3, 3] -> [..., 4, 3]."""
    j0 = 1 + 4 * chain
    bones = np.diff(rest.joints[j0:j0 + 4], axis=0)  # [3, 3] rest bone vectors
    g = rotations[..., 0, :, :]
    out = [np.broadcast_to(rest.joints[j0], (*rotations.shape[:-3], 3))]
    for b in range(3):
        if b:
            g = g @ rotations[..., b, :, :]
        out.append(out[-1] + g @ bones[b])
    return np.stack(out, -2)


def forward_kinematics(rest: RestHand, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bone rotations [16, 3, 3] (hand-frame axes, relative to the parent bone) and posed
    joints [21, 3] of a hand with joint ``angles`` [5, 5]."""
    local = np.empty((NUM_BONES, 3, 3))
    local[0] = np.eye(3)
    posed = np.empty((NUM_JOINTS, 3))
    posed[0] = rest.joints[0]
    for c in range(NUM_CHAINS):
        rotations = chain_rotations(c, angles[c])  # [3, 3, 3]
        local[1 + 3 * c:4 + 3 * c] = rotations
        posed[1 + 4 * c:5 + 4 * c] = _chain_joints(rest, c, rotations)
    return local, posed


def _global_rotations(local: np.ndarray) -> np.ndarray:
    """Accumulate relative bone rotations along each chain, [16, 3, 3]."""
    glob = local.copy()
    for c in range(NUM_CHAINS):
        for b in range(1, 3):
            k = 1 + 3 * c + b
            glob[k] = glob[k - 1] @ local[k]
    return glob


def pose_hand(betas: np.ndarray, angles: np.ndarray) -> Hand:
    """The posed mesh and joints of a hand of shape ``betas`` with joint ``angles`` [5, 5]."""
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape != (NUM_CHAINS, 5):
        raise ValueError(f"angles: expected shape ({NUM_CHAINS}, 5), got {angles.shape}")
    topo = topology()
    rest = rest_hand(betas)
    local, posed = forward_kinematics(rest, angles)
    glob = _global_rotations(local)
    pivots_rest = rest.joints[list(BONE_JOINTS)]  # [16, 3]
    pivots_posed = posed[list(BONE_JOINTS)]
    # Affine bone transforms v -> G v + (q - G p), blended per vertex.
    affine = np.concatenate(
        [glob, (pivots_posed - np.einsum("bij,bj->bi", glob, pivots_rest))[:, :, None]], axis=2)
    blended = (topo.weights @ affine.reshape(NUM_BONES, 12)).reshape(NUM_VERTS, 3, 4)
    verts = np.einsum("vij,vj->vi", blended[:, :, :3], rest.verts) + blended[:, :, 3]
    return Hand(verts=verts, joints=topo.regressor @ verts, local_rotvecs=rotvec(local),
                betas=np.asarray(betas, dtype=np.float64), angles=angles)


# --- Skin webs (rendered, never annotated) -------------------------------------------------------

# Between neighbouring chains: per side, the ring at the web's base and the two rings (and the
# share of the way between them) where its free edge lies, as (bone, t) of ``_FINGER_RINGS`` /
# ``_THUMB_RINGS``. The thumb's web spans from its metacarpal to the index knuckle; the fingers'
# reach about a fifth of the way up the first phalanx.
_FINGER_WEB = ((0, 0.0), (0, 0.0), (0, 0.35), 0.55)
_WEBS = (
    (0, ((0, 0.45), (1, 0.0), (1, 0.0), 0.0), 1, ((0, -0.15), (0, 0.0), (0, 0.0), 0.0)),
    (1, _FINGER_WEB, 2, _FINGER_WEB),
    (2, _FINGER_WEB, 3, _FINGER_WEB),
    (3, _FINGER_WEB, 4, _FINGER_WEB),
)


@lru_cache(maxsize=1)
def webs() -> tuple[np.ndarray, np.ndarray]:
    """Skin webs between the thumb and index and between the fingers, drawn with the hand but
    outside its 778 vertices: a blend matrix [W, 778] (web vertices = blend @ hand vertices, so
    they follow any pose) and outward faces [F, 3] into the web vertices.

    Each web is a wedge: a palmar and a dorsal sheet from the facing sides of two chains, closed
    by its free edge. Real crops show them; the tube fingers alone leave gaps at the knuckles.
    """
    topo = topology()
    rest = rest_hand(np.zeros(NUM_BETAS)).verts

    def ring(chain: int, bone: int, t: float) -> np.ndarray:
        return np.flatnonzero((topo.chain == chain) & (topo.bone == bone) & (topo.t == t) & (topo.radial > 0))

    rows, faces = [], []
    for a, side_a, b, side_b in _WEBS:
        target = {a: rest[ring(b, *side_b[0])].mean(0), b: rest[ring(a, *side_a[0])].mean(0)}
        corners = {}  # (side, base/edge, palmar/dorsal) -> row of the blend matrix
        for side, chain, (base, lo, hi, w) in ((0, a, side_a), (1, b, side_b)):
            # The vertex of the base ring facing the other chain, and its two neighbours round the ring.
            base_ids = ring(chain, *base)
            facing = int(np.argmin(np.linalg.norm(rest[base_ids] - target[chain], axis=1)))
            around = len(base_ids)
            for k in (-1, 1):
                j = (facing + k) % around
                key = "palmar" if rest[base_ids[j], 2] > rest[base_ids[(facing - k) % around], 2] else "dorsal"
                row = np.zeros(NUM_VERTS)
                row[base_ids[j]] = 1.0
                corners[side, "base", key] = row
                row = np.zeros(NUM_VERTS)
                row[ring(chain, *lo)[j]] += 1.0 - w
                row[ring(chain, *hi)[j]] += w
                corners[side, "edge", key] = row
        start = len(rows)
        names = list(corners)
        rows += [corners[n] for n in names]
        at = {n: start + i for i, n in enumerate(names)}
        centre = np.mean([r @ rest for r in corners.values()], axis=0)
        for quad in (
            [(0, "base", "palmar"), (0, "edge", "palmar"), (1, "edge", "palmar"), (1, "base", "palmar")],
            [(0, "base", "dorsal"), (0, "edge", "dorsal"), (1, "edge", "dorsal"), (1, "base", "dorsal")],
            [(0, "edge", "palmar"), (0, "edge", "dorsal"), (1, "edge", "dorsal"), (1, "edge", "palmar")],
        ):
            ids = [at[q] for q in quad]
            pts = np.array([corners[q] @ rest for q in quad])
            normal = np.cross(pts[1] - pts[0], pts[2] - pts[0]) + np.cross(pts[2] - pts[0], pts[3] - pts[0])
            if normal @ (pts.mean(0) - centre) < 0:  # wind so that the normal leaves the wedge
                ids = ids[::-1]
            faces += [(ids[0], ids[1], ids[2]), (ids[0], ids[2], ids[3])]
    return np.array(rows), np.array(faces, dtype=np.int32)


# --- Forearm (rendered, never annotated) ---------------------------------------------------------

# An elliptic cone from just inside the palm's lower end down the arm, long enough to leave any
# crop: half-widths (radial x, palmar z) at the wrist and at its far end, meters, for shape 0.
_FOREARM_LENGTH = 0.30
_FOREARM_START = 0.004  # above the wrist joint: it overlaps the palm, so no gap opens at the wrist
_FOREARM_HALF = ((0.026, 0.0135), (0.036, 0.027))
_FOREARM_RINGS, _FOREARM_AROUND = 12, 18


def forearm(betas: np.ndarray, flexion: float, deviation: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The forearm of a hand of shape ``betas`` in the hand frame: vertices [R * A, 3], outward
    faces [F, 3] of an open tube along -y, bent at the wrist by ``flexion`` (radians, about x;
    positive toward the palm) and ``deviation`` (about z; positive toward the thumb), and how
    much each vertex faces the palm's side [R * A] in [-1, 1] (as ``Topology.palmar``).

    Real crops always show the wrist and forearm leaving the frame; the mesh carries none of it,
    so it is drawn but not part of the 778 vertices or the mask.
    """
    f = 1.0 + np.asarray(betas, dtype=np.float64) * _BETA_RANGE
    scale, width, thick = f[0], f[1], f[3]
    s = np.linspace(0.0, 1.0, _FOREARM_RINGS)[:, None]  # [R, 1]
    (x0, z0), (x1, z1) = _FOREARM_HALF
    half_x = (x0 + (x1 - x0) * s) * width * scale
    half_z = (z0 + (z1 - z0) * s) * thick * scale
    phi = 2 * np.pi * np.arange(_FOREARM_AROUND) / _FOREARM_AROUND  # [A]
    y = np.broadcast_to(_FOREARM_START * scale - s * _FOREARM_LENGTH * scale, (_FOREARM_RINGS, _FOREARM_AROUND))
    verts = np.stack([half_x * np.cos(phi), y, half_z * np.sin(phi)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(_FOREARM_RINGS - 1), np.arange(_FOREARM_AROUND), indexing="ij")
    a, b = i * _FOREARM_AROUND + j, i * _FOREARM_AROUND + (j + 1) % _FOREARM_AROUND
    c, d = a + _FOREARM_AROUND, b + _FOREARM_AROUND
    # Rings run down -y and phi turns from +x to +z: (a, b, c) winds counter-clockwise outside.
    faces = np.concatenate([np.stack([a, b, c], -1), np.stack([b, d, c], -1)]).reshape(-1, 3)
    bend = axis_rotation(np.array([1.0, 0.0, 0.0]), -flexion) @ axis_rotation(np.array([0.0, 0.0, 1.0]), deviation)
    palmar = np.tile(np.sin(phi), _FOREARM_RINGS)
    return verts @ bend.T, faces.astype(np.int32), palmar


# --- Sampling ------------------------------------------------------------------------------------

# Pose families: weight, finger curls index..little (low, high), thumb style, spread (low, high).
_FAMILIES = {
    "open": (0.14, ((0.0, 0.12),) * 4, "open", (0.3, 1.0)),
    "flat": (0.06, ((0.0, 0.1),) * 4, "alongside", (-0.3, 0.2)),
    "relaxed": (0.16, ((0.1, 0.35), (0.15, 0.4), (0.2, 0.45), (0.25, 0.55)), "relaxed",
                (0.0, 0.6)),
    "fist": (0.13, ((0.8, 1.0),) * 4, "tucked", (-0.3, 0.1)),
    "point": (0.09, ((0.0, 0.1), (0.8, 1.0), (0.8, 1.0), (0.8, 1.0)), "tucked", (0.0, 0.4)),
    "pinch": (0.13, ((0.3, 0.6), (0.1, 0.9), (0.1, 0.9), (0.1, 0.9)), "pinch", (0.0, 0.5)),
    "victory": (0.06, ((0.0, 0.1), (0.0, 0.1), (0.8, 1.0), (0.8, 1.0)), "tucked", (0.6, 1.0)),
    "thumb up": (0.04, ((0.8, 1.0),) * 4, "open", (-0.3, 0.1)),
    "grasp": (0.11, ((0.4, 0.7),) * 4, "opposed", (0.0, 0.4)),
    "random": (0.08, ((0.0, 1.0),) * 4, "random", (-0.5, 1.0)),
}
# Thumb styles: ranges (degrees) of the five thumb angles.
_THUMB_STYLES = {
    "open": ((-20, 0), (-10, 25), (-10, 10), (-10, 15), (-15, 15)),
    "alongside": ((15, 35), (-15, 5), (-5, 10), (0, 15), (0, 15)),
    "relaxed": ((0, 25), (0, 30), (0, 15), (5, 30), (5, 35)),
    "opposed": ((20, 50), (25, 55), (10, 35), (5, 35), (5, 40)),
    "tucked": ((25, 55), (0, 25), (0, 25), (20, 55), (10, 50)),
    "random": _THUMB_LIMITS,
}
_PINCH_CANDIDATES = 256
# Abduction at full spread, degrees toward the thumb, index..little.
_SPREAD_DEG = np.array([14.0, 2.0, -9.0, -18.0])


def sample_betas(rng: np.random.Generator) -> np.ndarray:
    """A random hand shape: betas uniform in [-1, 1], [10]."""
    return rng.uniform(-1.0, 1.0, NUM_BETAS)


_CONTACT = 0.6  # bone axes nearer than this share of their radii's sum pass through each other
_TRIES = 20  # poses drawn at most until one does not pass through itself
_AXIS_SAMPLES = np.linspace(0.0, 1.0, 9)


def self_intersects(rest: RestHand, angles: np.ndarray) -> bool:
    """Whether a finger (or the thumb) passes through another: two bones' axes come nearer than
    _CONTACT of the sum of their radii. The bones that meet at neighbouring knuckles and the
    thumb's metacarpal (inside the palm's flesh) are left out."""
    _, joints = forward_kinematics(rest, angles)
    bones = [(c, b) for c in range(NUM_CHAINS) for b in range(3) if (c, b) != (0, 0)]
    starts = np.array([joints[1 + 4 * c + b] for c, b in bones])  # [B, 3]
    ends = np.array([joints[2 + 4 * c + b] for c, b in bones])
    points = starts[:, None] + _AXIS_SAMPLES[:, None] * (ends - starts)[:, None]  # [B, 9, 3]
    dist = np.linalg.norm(points[:, None, :, None] - points[None, :, None, :], axis=-1).min((2, 3))  # [B, B]
    chain = np.array([c for c, _ in bones])
    bone = np.array([b for _, b in bones])
    reach = _CONTACT * (rest.radius[chain][:, None] + rest.radius[chain][None, :])
    other = chain[:, None] < chain[None, :]
    knuckles = (chain[None, :] == chain[:, None] + 1) & (bone[:, None] == 0) & (bone[None, :] == 0) & (chain[:, None] > 0)
    return bool((other & ~knuckles & (dist < reach)).any())


def sample_angles(rng: np.random.Generator, betas: np.ndarray) -> np.ndarray:
    """Random joint angles [5, 5] (radians) from a mix of pose families, within the limits,
    redrawn (up to _TRIES times) while the fingers pass through each other.

    ``betas`` is the hand's shape, needed to bring the thumb tip to a fingertip in pinches.
    """
    rest = rest_hand(betas)
    for _ in range(_TRIES):
        angles = _draw_angles(rng, rest)
        if not self_intersects(rest, angles):
            break
    return angles


def _draw_angles(rng: np.random.Generator, rest: RestHand) -> np.ndarray:
    """One draw of :func:`sample_angles`, which may pass through itself."""
    names = list(_FAMILIES)
    weights = np.array([_FAMILIES[n][0] for n in names])
    _, curls, thumb, spread = _FAMILIES[names[rng.choice(len(names), p=weights / weights.sum())]]
    deg = np.empty((NUM_CHAINS, 5))
    curl = rng.uniform(*np.array(curls).T)  # [4]
    spread = rng.uniform(*spread)
    deg[1:, 0] = -10 + 90 * curl + rng.normal(0, 8, 4)  # MCP
    deg[1:, 3] = 105 * curl + rng.normal(0, 8, 4)  # PIP
    deg[1:, 4] = 0.7 * deg[1:, 3] + rng.normal(0, 6, 4)  # DIP follows PIP
    # Curled fingers close together; open ones spread.
    deg[1:, 1] = _SPREAD_DEG * spread * (1 - 0.7 * curl) + rng.normal(0, 3, 4)
    deg[1:, 2] = rng.normal(0, 2, 4)
    deg = np.clip(deg, ANGLE_LIMITS_DEG[..., 0], ANGLE_LIMITS_DEG[..., 1])
    if thumb == "pinch":
        deg[0] = _pinching_thumb(rng, rest, np.radians(deg))
    else:
        style = str(rng.choice(list(_THUMB_STYLES))) if thumb == "random" else thumb
        deg[0] = rng.uniform(*np.array(_THUMB_STYLES[style], dtype=np.float64).T)
    return np.radians(np.clip(deg, ANGLE_LIMITS_DEG[..., 0], ANGLE_LIMITS_DEG[..., 1]))


def _pinching_thumb(rng: np.random.Generator, rest: RestHand, angles: np.ndarray) -> np.ndarray:
    """Thumb angles (degrees, [5]) whose tip comes closest to pinching the index or middle
    fingertip, the best of random candidates within the thumb's limits."""
    target_chain = 1 if rng.random() < 0.7 else 2
    target = _chain_joints(rest, target_chain,
                           chain_rotations(target_chain, angles[target_chain]))[-1]
    candidates = rng.uniform(*ANGLE_LIMITS_DEG[0].T, size=(_PINCH_CANDIDATES, 5))
    tips = _chain_joints(rest, 0, chain_rotations(0, np.radians(candidates)))[:, -1]
    # Tips (the ends of the fingers) stay about a pad's thickness apart when the pads touch.
    gap = np.abs(np.linalg.norm(tips - target, axis=1) - rng.uniform(0.008, 0.02))
    return candidates[np.argmin(gap)]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation uniform over SO(3), [3, 3]."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])
