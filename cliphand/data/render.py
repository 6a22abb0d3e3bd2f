"""A small numpy renderer for the synthetic hands: rasteriser, skin shading, backgrounds from
real photographs and procedural textures, occluders and camera effects.

Camera convention (FreiHAND's): camera space in meters, x right, y down, z forward; a point
projects to ``uv = (K @ p)[:2] / p[2]``, pixel ``(col, row)`` having its centre at ``uv = (col,
row)``. The rasteriser enumerates, for every front-facing triangle, the pixel centres in its
bounding box at once (no per-triangle Python loop), keeps those inside, and resolves visibility
with a z-buffer on inverse depth. Attributes are interpolated perspective-correctly.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
import skimage.data
from PIL import Image, ImageFilter

from cliphand.camera import project

_NEAR = 1e-3  # meters; triangles with a vertex closer than this are dropped


@dataclass(frozen=True)
class Fragments:
    """What the rasteriser found at each pixel."""

    face: np.ndarray  # [H, W] int, index of the visible face, -1 for background
    bary: np.ndarray  # [H, W, 3] perspective-correct barycentric weights of the visible face


@dataclass(frozen=True)
class Lighting:
    """A directional key light plus ambient and a fill light from the camera; optionally an
    environment (the ambient brighter from the sky above than from the ground), a coloured key
    light and skin's subsurface scattering (light wraps past the terminator, red furthest)."""

    direction: np.ndarray  # [3] unit vector toward the light, camera space
    ambient: float
    diffuse: float
    fill: float
    specular: float
    shininess: float
    exposure: float
    sky: float = 0.0  # ambient × (1 + sky × up-facing), up = camera -y
    wrap: float = 0.0  # subsurface wrap of the red channel (green, blue: _SCATTER of it)
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour of the key light


_SCATTER = np.array([1.0, 0.45, 0.3], dtype=np.float32)  # skin scatters red deepest


def rasterize(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, height: int,
              width: int) -> Fragments:
    """Visible face and barycentrics per pixel of a closed mesh (back faces are culled).

    verts: [V, 3] camera space; faces: [F, 3] counter-clockwise seen from outside.
    """
    uv, z = project(verts, K), verts[:, 2]
    v0, v1, v2 = (verts[faces[:, i]] for i in range(3))
    # A face is visible only if its outward normal points toward the camera at the origin.
    front = np.einsum("ij,ij->i", np.cross(v1 - v0, v2 - v0), v0) < 0
    front &= (z[faces] > _NEAR).all(axis=1)
    face_ids = np.flatnonzero(front)
    f = faces[face_ids]
    x, y = uv[f, 0], uv[f, 1]  # [F', 3] each
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    x_lo = np.clip(np.ceil(x.min(1)), 0, width).astype(np.int64)
    x_hi = np.clip(np.floor(x.max(1)), -1, width - 1).astype(np.int64)
    y_lo = np.clip(np.ceil(y.min(1)), 0, height).astype(np.int64)
    y_hi = np.clip(np.floor(y.max(1)), -1, height - 1).astype(np.int64)
    w, h = x_hi - x_lo + 1, y_hi - y_lo + 1
    keep = (w > 0) & (h > 0) & (np.abs(area) > 1e-12)
    face_ids, f, x, y, area = face_ids[keep], f[keep], x[keep], y[keep], area[keep]
    x_lo, y_lo, w, h = x_lo[keep], y_lo[keep], w[keep], h[keep]

    # Barycentrics of vertices 0 and 1 as planes over the offset (dx, dy) from the box corner:
    # l_i = a_i dx + b_i dy + e_i (l_2 = 1 - l_0 - l_1).
    j, k = [1, 2], [2, 0]
    a = (y[:, j] - y[:, k]) / area[:, None]  # [F', 2]
    b = (x[:, k] - x[:, j]) / area[:, None]
    e = (x[:, j] * y[:, k] - x[:, k] * y[:, j]) / area[:, None] + a * x_lo[:, None] \
        + b * y_lo[:, None]
    a, b, e = a.astype(np.float32), b.astype(np.float32), e.astype(np.float32)

    # One fragment per pixel centre in each face's bounding box.
    count = w * h
    tri = np.repeat(np.arange(len(f)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    dy, dx = np.divmod(local, w[tri])
    dx, dy = dx.astype(np.float32), dy.astype(np.float32)
    l0 = a[tri, 0] * dx + b[tri, 0] * dy + e[tri, 0]
    l1 = a[tri, 1] * dx + b[tri, 1] * dy + e[tri, 1]
    inside = (l0 >= 0) & (l1 >= 0) & (l0 + l1 <= 1)
    tri, l0, l1 = tri[inside], l0[inside], l1[inside]
    pixel = (y_lo[tri] + dy[inside].astype(np.int64)) * width + x_lo[tri] \
        + dx[inside].astype(np.int64)
    inv_z = (1.0 / z[f]).astype(np.float32)[tri]  # [N, 3]
    lz = np.stack([l0 * inv_z[:, 0], l1 * inv_z[:, 1], (1 - l0 - l1) * inv_z[:, 2]], 1)
    depth_key = lz[:, 0] + lz[:, 1] + lz[:, 2]  # inverse depth: larger is nearer

    best = np.full(height * width, -np.inf, dtype=np.float32)
    np.maximum.at(best, pixel, depth_key)
    win = depth_key == best[pixel]
    face = np.full(height * width, -1, dtype=np.int64)
    bary = np.zeros((height * width, 3), dtype=np.float32)
    face[pixel[win]] = face_ids[tri[win]]
    bary[pixel[win]] = lz[win] / depth_key[win, None]
    return Fragments(face=face.reshape(height, width), bary=bary.reshape(height, width, 3))


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3]."""
    v0, v1, v2 = (verts[faces[:, i]] for i in range(3))
    fn = np.cross(v1 - v0, v2 - v0)  # length = twice the area
    normals = np.zeros_like(verts)
    for i in range(3):
        for axis in range(3):
            normals[:, axis] += np.bincount(faces[:, i], fn[:, axis], minlength=len(verts))
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def shade(verts: np.ndarray, faces: np.ndarray, albedo: np.ndarray, fragments: Fragments,
          light: Lighting) -> tuple[np.ndarray, np.ndarray]:
    """Blinn-Phong shaded colour [H, W, 3] (0 off the mesh) and coverage [H, W] bool."""
    covered = fragments.face >= 0
    f = faces[fragments.face[covered]]  # [N, 3]
    bary = fragments.bary[covered]  # [N, 3]

    def interpolate(values: np.ndarray) -> np.ndarray:  # [V, C] -> [N, C]
        values = values.astype(np.float32)
        return (values[f[:, 0]] * bary[:, :1] + values[f[:, 1]] * bary[:, 1:2]
                + values[f[:, 2]] * bary[:, 2:])

    n = interpolate(vertex_normals(verts, faces))
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
    view = -interpolate(verts)
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    to_light = light.direction.astype(np.float32)
    half = to_light + view
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    cos_l = n @ to_light
    n_dot_l = np.clip(cos_l, 0.0, None)
    n_dot_v = np.clip(np.einsum("ij,ij->i", n, view), 0.0, None)
    n_dot_h = np.clip(np.einsum("ij,ij->i", n, half), 0.0, None)
    tint = np.asarray(light.tint, dtype=np.float32)
    spec = light.specular * n_dot_h ** light.shininess * n_dot_l
    wrap = light.wrap * _SCATTER  # [3]
    diffuse = np.clip((cos_l[:, None] + wrap) / (1.0 + wrap), 0.0, None)  # [N, 3]
    ambient = light.ambient * (1.0 + light.sky * -n[:, 1])  # [N]
    intensity = ambient[:, None] + light.diffuse * diffuse * tint + light.fill * n_dot_v[:, None]
    rgb = np.zeros((*covered.shape, 3), dtype=np.float32)
    rgb[covered] = np.clip(light.exposure * (interpolate(albedo) * intensity
                                             + spec[:, None] * tint), 0.0, 1.0)
    return rgb, covered


def render(verts: np.ndarray, faces: np.ndarray, albedo: np.ndarray, K: np.ndarray, size: int,
           light: Lighting, supersample: int = 2, mask_faces: int | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anti-aliased render of a mesh: premultiplied colour [S, S, 3], alpha [S, S] in [0, 1] and
    the coverage [S, S] of its first ``mask_faces`` faces where they are visible (all: alpha).

    The mesh is rasterised at ``supersample`` times the resolution and box-filtered down.
    """
    s = supersample
    # Sub-pixel centres of pixel col are col + (k + 0.5) / s - 0.5, k = 0..s-1.
    K_hi = K * np.array([[s], [s], [1.0]])
    K_hi[:2, 2] += (s - 1) / 2.0
    fragments = rasterize(verts, faces, K_hi, size * s, size * s)
    rgb, covered = shade(verts, faces, albedo, fragments, light)
    coverage = covered.astype(np.float32)
    own = coverage if mask_faces is None else (covered & (fragments.face < mask_faces)).astype(np.float32)
    color = np.zeros((size, size, 3), np.float32)
    alpha = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), np.float32)
    for dy in range(s):  # box filter as s * s strided sums (faster than a reshaped mean)
        for dx in range(s):
            color += rgb[dy::s, dx::s]
            alpha += coverage[dy::s, dx::s]
            mask += own[dy::s, dx::s]
    return color / (s * s), alpha / (s * s), mask / (s * s)


# --- Appearance ----------------------------------------------------------------------------------

_SKIN_TONES = np.array([
    (255, 222, 196), (241, 194, 167), (224, 172, 138), (205, 150, 115),
    (176, 120, 88), (143, 92, 64), (112, 70, 48), (84, 54, 38),
]) / 255.0
_PALM_TINT = np.array([0.93, 0.72, 0.64])  # palms and nails are lighter and pinker
_NAIL_TINT = np.array([0.92, 0.78, 0.74])
_FOLD_SHADE = np.array([0.8, 1.0, 1.0])  # folds darken green and blue most: they look redder


def skin_albedo(rng: np.random.Generator, palmar: np.ndarray, nail: np.ndarray,
                crease: np.ndarray) -> np.ndarray:
    """Per-vertex skin colour [V, 3] in [0, 1]: a random tone, lighter palm side and nails,
    darker, redder folds.

    palmar: [V] in [-1, 1], how much each vertex faces out of the palm; nail, crease: [V] in [0, 1].
    """
    i = rng.uniform(0, len(_SKIN_TONES) - 1)
    lo = int(i)
    tone = _SKIN_TONES[lo] + (i - lo) * (_SKIN_TONES[min(lo + 1, len(_SKIN_TONES) - 1)]
                                         - _SKIN_TONES[lo])
    tone = np.clip(tone * rng.uniform(0.92, 1.08, 3), 0, 1)
    palm_mix = 0.45 * np.clip(palmar, 0.0, 1.0)[:, None]
    albedo = tone + palm_mix * (_PALM_TINT * tone.max() ** 0.3 - tone)
    albedo += 0.6 * nail[:, None] * (_NAIL_TINT - albedo)
    albedo *= 1.0 - rng.uniform(0.15, 0.3) * crease[:, None] * _FOLD_SHADE
    albedo *= 1.0 + rng.normal(0.0, 0.025, (len(palmar), 1))
    return np.clip(albedo, 0.0, 1.0)


def sample_lighting(rng: np.random.Generator) -> Lighting:
    """A random key light from the camera's side of the hand in a bright environment: a sky
    ambient, a key light from warm lamp to cool daylight, and skin's subsurface scattering."""
    d = rng.normal(size=3)
    d[2] = -abs(d[2]) - 0.5  # toward the camera (negative z), never from behind the hand
    warm = rng.uniform(-1.0, 1.0)
    return Lighting(
        direction=d / np.linalg.norm(d), ambient=rng.uniform(0.35, 0.6),
        diffuse=rng.uniform(0.4, 0.75), fill=rng.uniform(0.0, 0.2),
        specular=rng.uniform(0.03, 0.2), shininess=rng.uniform(10.0, 40.0),
        exposure=rng.uniform(0.9, 1.15), sky=rng.uniform(0.0, 0.4), wrap=rng.uniform(0.2, 0.6),
        tint=(1.0 + 0.08 * warm, 1.0, 1.0 - 0.08 * warm),
    )


# --- Backgrounds ---------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [0, 1), [S, S] each."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return x, y


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random RGB colours [n, 3], mixing vivid and muted ones."""
    hsv = np.stack([rng.random(n), rng.random(n) ** 0.7, rng.uniform(0.08, 1.0, n)], 1)
    return np.array([colorsys.hsv_to_rgb(*c) for c in hsv], dtype=np.float32)


def _value_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Multi-octave value noise in [0, 1], [S, S]."""
    octaves = int(rng.integers(2, 6))
    cells = int(rng.integers(2, 7))
    persistence = rng.uniform(0.35, 0.7)
    out = np.zeros((size, size), np.float32)
    amp = 1.0
    for _ in range(octaves):
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        out += amp * np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))
        amp *= persistence
        cells *= 2
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def _palette_map(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Map a field in [0, 1] through a random 2-4 colour ramp, [S, S, 3]."""
    colors = _random_colors(rng, int(rng.integers(2, 5)))
    stops = np.linspace(0, 1, len(colors))
    return np.stack([np.interp(t, stops, colors[:, c]) for c in range(3)], -1).astype(np.float32)


def _noise_bg(rng: np.random.Generator, size: int) -> np.ndarray:
    return _palette_map(rng, _value_noise(rng, size))


def _stripes_bg(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    theta = rng.uniform(0, np.pi)
    u = x * np.cos(theta) + y * np.sin(theta)
    phase = 2 * np.pi * (u * rng.uniform(2, 30) + rng.random())
    phase += rng.uniform(0, 4) * _value_noise(rng, size)  # wavy stripes
    wave = np.sin(phase)
    if rng.random() < 0.5:
        wave = np.tanh(wave * rng.uniform(3, 20))  # hard-edged
    return _palette_map(rng, 0.5 + 0.5 * wave)


def _gradient_bg(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    if rng.random() < 0.5:
        theta = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(theta) + y * np.sin(theta)
    else:
        cx, cy = rng.uniform(-0.2, 1.2, 2)
        t = np.hypot(x - cx, y - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    t += 0.15 * (_value_noise(rng, size) - 0.5)
    return _palette_map(rng, np.clip(t, 0, 1))


def _blobs_bg(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random soft ellipses and hard rectangles over a base colour, like cluttered scenes."""
    x, y = _grid(size)
    out = np.broadcast_to(_random_colors(rng, 1)[0], (size, size, 3)).copy()
    for color in _random_colors(rng, int(rng.integers(4, 30))):
        cx, cy = rng.random(2)
        theta = rng.uniform(0, np.pi)
        a, b = rng.uniform(0.02, 0.35, 2)
        hard = rng.random() < 0.4
        sharpness = rng.uniform(1, 10)
        # Work in the shape's bounding window only.
        r = np.hypot(a, b)
        c0, c1 = (np.clip(np.array([cx - r, cx + r]) * size, 0, size).astype(int))
        r0, r1 = (np.clip(np.array([cy - r, cy + r]) * size, 0, size).astype(int))
        if c1 <= c0 or r1 <= r0:
            continue
        dx, dy = x[r0:r1, c0:c1] - cx, y[r0:r1, c0:c1] - cy
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (dy * np.cos(theta) - dx * np.sin(theta)) / b
        if hard:
            alpha = ((np.abs(u) < 1) & (np.abs(v) < 1)).astype(np.float32)
        else:
            alpha = np.clip((1 - (u * u + v * v)) * sharpness, 0, 1)
        window = out[r0:r1, c0:c1]
        window += alpha[..., None] * (color - window)
    return out


_BACKGROUNDS = (_noise_bg, _stripes_bg, _gradient_bg, _blobs_bg)

# Real photographs that scikit-image ships in its wheel (no download), each in the public domain
# or under CC0 (their docstrings in ``skimage.data``): a person indoors, a cup on a table, a cat on
# a sofa, a rocket outdoors, a street scene, and brick, grass, gravel and coin textures.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "grass", "gravel", "coins")
PHOTO_SHARE = 0.6  # of backgrounds; the rest are procedural
SKIN_DISTRACTORS = 0.25  # of backgrounds with skin-coloured discs: skin colour alone is no hand
DEFOCUS_SHARE = 0.75  # of backgrounds out of focus
# The scene's brightness against the hand's: the lamp or window that lights the hand near the camera
# lights the scene behind it less (the light falls off with distance).
BACKGROUND_LIGHT = (0.5, 1.0)


@cache
def photo(name: str) -> np.ndarray:
    """One of PHOTOS as uint8 RGB [H, W, 3] (grey ones repeated over the channels)."""
    image = getattr(skimage.data, name)()
    return np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]


def _photo_bg(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of a photo, turned, and colour-shifted."""
    image = photo(PHOTOS[rng.integers(len(PHOTOS))])
    h, w = image.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = np.rot90(image[y0:y0 + side, x0:x0 + side], int(rng.integers(4)))
    pil = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(pil, dtype=np.float32) / 255.0
    grey = out.mean(-1, keepdims=True)
    saturation = rng.uniform(0.3, 1.2)
    out = grey + saturation * (out - grey)
    out = out * rng.uniform(0.8, 1.2, 3).astype(np.float32) * rng.uniform(0.6, 1.3)
    return out


def random_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random background [S, S, 3] in [0, 1]: a photo (PHOTO_SHARE of them) or a procedural
    texture (noise, stripes, gradients or blobs), sometimes blended with a second one through a
    noise mask, sometimes with skin-coloured distractors, mostly out of focus, and lit less than the
    hand (BACKGROUND_LIGHT)."""
    def one() -> np.ndarray:
        if rng.random() < PHOTO_SHARE:
            return _photo_bg(rng, size)
        return _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, size)

    out = one()
    if rng.random() < 0.25:
        other = one()
        mask = _value_noise(rng, size)
        mask = np.clip((mask - 0.5) * rng.uniform(2, 12) + 0.5, 0, 1)[..., None]
        out = out + mask * (other - out)
    if rng.random() < SKIN_DISTRACTORS:
        x, y = _grid(size)
        for _ in range(int(rng.integers(1, 4))):
            tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))].astype(np.float32)
            cx, cy = rng.random(2)
            r = rng.uniform(0.05, 0.25)
            alpha = np.clip((1 - ((x - cx) ** 2 + (y - cy) ** 2) / r**2) * 4, 0, 1)
            out += alpha[..., None] * (tone * rng.uniform(0.6, 1.1) - out)
    if rng.random() < DEFOCUS_SHARE:  # the camera focuses on the hand, the scene behind it blurs
        radius = rng.uniform(0.5, 3.5) * size / 224
        out = np.asarray(Image.fromarray(np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0
    out = out * rng.uniform(*BACKGROUND_LIGHT)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def composite(color: np.ndarray, alpha: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Premultiplied colour [S, S, 3] with alpha [S, S] over a background [S, S, 3]."""
    return color + (1.0 - alpha[..., None]) * background


# --- Objects in front of the hand ----------------------------------------------------------------

OCCLUDER_SHARE = 0.3  # of images with objects in front of the hand, as in FreiHAND's hand-object scenes
_MAX_HIDDEN = 0.3  # an object hiding more of the hand than this is left out


def sample_occluders(rng: np.random.Generator, hand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One or two objects over part of the hand (coverage ``hand`` [S, S]): premultiplied colour
    [S, S, 3] and alpha [S, S], zero where there is none. Each is a rounded box or ellipse centred
    on a hand pixel, a photo's texture or a plain colour, shaded like a rounded solid."""
    size = hand.shape[0]
    color = np.zeros((size, size, 3), np.float32)
    alpha = np.zeros((size, size), np.float32)
    rows, cols = np.nonzero(hand > 0.5)
    if rng.random() >= OCCLUDER_SHARE or len(rows) == 0:
        return color, alpha
    x, y = _grid(size)
    for _ in range(int(rng.integers(1, 3))):
        i = rng.integers(len(rows))
        cx, cy = (cols[i] + 0.5) / size, (rows[i] + 0.5) / size
        theta = rng.uniform(0, np.pi)
        a = rng.uniform(0.06, 0.3)
        b = a * rng.uniform(0.2, 1.0)
        u = ((x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)) / a
        v = ((y - cy) * np.cos(theta) - (x - cx) * np.sin(theta)) / b
        power = rng.uniform(2.0, 8.0)  # superellipse: 2 an ellipse, 8 nearly a box
        radius = (np.abs(u) ** power + np.abs(v) ** power) ** (1.0 / power)
        cover = np.clip((1.0 - radius) * b * size, 0.0, 1.0)  # an edge about a pixel wide
        if (cover * hand).sum() > _MAX_HIDDEN * hand.sum():
            continue
        if rng.random() < 0.5:
            texture = _photo_bg(rng, size)
        else:
            texture = np.broadcast_to(_random_colors(rng, 1)[0], (size, size, 3))
        shading = 0.55 + 0.45 * np.sqrt(np.clip(1.0 - v * v, 0.0, 1.0))  # lit across its short side
        layer = np.clip(texture * shading[..., None], 0.0, 1.0)
        color += cover[..., None] * (layer - color)
        alpha += cover * (1.0 - alpha)
    return color, alpha


# --- Camera ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CameraEffects:
    """Blur, sensor noise, white balance and vignetting, shared by every background version of a
    pose."""

    blur: float  # Gaussian radius, pixels (0 for none)
    noise: np.ndarray  # [S, S, 3] additive noise in 8-bit levels
    gain: np.ndarray  # [3] per-channel gain: the camera's colour cast
    vignette: float  # darkening at the corners, 0 for none


def sample_camera_effects(rng: np.random.Generator, size: int) -> CameraEffects:
    """Mild random blur and noise, a colour cast and sometimes a vignette."""
    blur = rng.uniform(0.3, 1.0) if rng.random() < 0.5 else 0.0
    noise = rng.normal(0.0, rng.uniform(0.0, 4.0), (size, size, 3)).astype(np.float32)
    gain = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    vignette = rng.uniform(0.0, 0.4) if rng.random() < 0.5 else 0.0
    return CameraEffects(blur=blur, noise=noise, gain=gain, vignette=vignette)


def to_uint8(image: np.ndarray, effects: CameraEffects | None = None) -> np.ndarray:
    """An image in [0, 1] as uint8 RGB, with optional camera effects."""
    if effects is not None:
        x, y = _grid(image.shape[0])
        falloff = 1.0 - effects.vignette * ((x - 0.5) ** 2 + (y - 0.5) ** 2) * 2.0
        image = image * effects.gain * falloff[..., None]
    out = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if effects is None:
        return out
    if effects.blur > 0:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(effects.blur)))
    return np.clip(out + effects.noise + 0.5, 0, 255).astype(np.uint8)
