"""Text prompts that describe the order of the 21 hand joints along each axis.

For each axis the joints are sorted by their camera-space coordinate, ascending. Camera space is x
right, y down, z forward, so the three orders read, in image terms, left to right, top to bottom and
near to far. One prompt per axis names the joints in that order, e.g. (x axis, default template)::

    Hand joints from left to right: wrist, thumb CMC, ..., little DIP and little tip.

Token budget. CLIP's text tower sees at most 77 tokens, start and end tokens included, and
open_clip's tokenizer truncates the rest silently. CLIP's BPE encodes whole words (the 21 names,
their commas and the "and" take 66 tokens), so a prompt's length depends on the set of names and the
template, not on their order. Worst-case counts with all 21 names, measured with
``open_clip.get_tokenizer("ViT-B-32")`` (start and end tokens included):

    ============  ===  ===============================================================
    template      len  x-axis sentence
    ============  ===  ===============================================================
    hand_joints    76  Hand joints from left to right: {joints}.    (default)
    authors        72  Order are: {joints}.             (the released code; all axes)
    terse          73  Left to right: {joints}.
    ============  ===  ===============================================================

The paper's wording, "From left to right, the joints are: {joints}.", needs 78 (79 with a serial
comma) and is left out. Names are joined as "a, b and c": no serial comma, one token less.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, Protocol

import numpy as np

from cliphand.skeleton import JOINT_NAMES, NUM_JOINTS

AXES = ("x", "y", "z")

# One format string per axis (x, y, z); "{joints}" receives the ordered joint names.
Template = tuple[str, str, str]

TEMPLATES: Mapping[str, Template] = {
    "hand_joints": (
        "Hand joints from left to right: {joints}.",
        "Hand joints from top to bottom: {joints}.",
        "Hand joints from near to far: {joints}.",
    ),
    # The released code uses one sentence for every axis; the axis-specific adapter tells them apart.
    "authors": ("Order are: {joints}.",) * 3,
    "terse": (
        "Left to right: {joints}.",
        "Top to bottom: {joints}.",
        "Near to far: {joints}.",
    ),
}
DEFAULT_TEMPLATE = "hand_joints"


class AxisPrompts(NamedTuple):
    """The three prompts of one sample, indexable by axis (0 = x, 1 = y, 2 = z)."""

    x: str
    y: str
    z: str


class Tokenizer(Protocol):
    """What the length check needs from open_clip's ``SimpleTokenizer``."""

    context_length: int

    def encode(self, text: str) -> list[int]: ...


def joint_orders(xyz: np.ndarray) -> np.ndarray:
    """Joint indices sorted by ascending coordinate, per axis.

    xyz: [..., 21, 3] camera-space joints. Returns [..., 3, 21] int64; ties keep joint-index order.
    """
    xyz = np.asarray(xyz)
    if xyz.shape[-2:] != (NUM_JOINTS, 3):
        raise ValueError(f"expected joints [..., {NUM_JOINTS}, 3], got {xyz.shape}")
    return np.argsort(np.swapaxes(xyz, -1, -2), axis=-1, kind="stable")  # [..., 3, 21]


def join_names(names: Sequence[str]) -> str:
    """"a, b and c" — comma-separated, "and" before the last name."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _resolve(template: str | Template) -> Template:
    if isinstance(template, str):
        if template not in TEMPLATES:
            raise KeyError(f"unknown prompt template {template!r}; known: {sorted(TEMPLATES)}")
        return TEMPLATES[template]
    if len(template) != 3 or any("{joints}" not in t for t in template):
        raise ValueError("a template is three format strings (x, y, z), each with '{joints}'")
    return tuple(template)


def make_prompts(
    xyz: np.ndarray,
    template: str | Template = DEFAULT_TEMPLATE,
    k: int | None = None,
    rng: np.random.Generator | None = None,
) -> list[AxisPrompts]:
    """The three axis prompts of every sample.

    xyz: [B, 21, 3] (or one [21, 3]) camera-space joints. With ``k``, each sample names a random
    subset of k joints (one draw per sample, shared by its three axes, from ``rng``), listed in
    their order along the axis.
    """
    fmt = _resolve(template)
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim == 2:
        xyz = xyz[None]
    orders = joint_orders(xyz)  # [B, 3, 21]
    if k is not None:
        if not 1 <= k <= NUM_JOINTS:
            raise ValueError(f"k must be in [1, {NUM_JOINTS}], got {k}")
        if rng is None:
            raise ValueError("a subset of joints (k) needs a seeded np.random.Generator (rng)")
    prompts = []
    for order in orders:
        if k is not None:
            keep = np.zeros(NUM_JOINTS, dtype=bool)
            keep[rng.choice(NUM_JOINTS, size=k, replace=False)] = True
            order = [axis_order[keep[axis_order]] for axis_order in order]
        prompts.append(AxisPrompts(*(
            fmt[axis].format(joints=join_names([JOINT_NAMES[j] for j in order[axis]]))
            for axis in range(3)
        )))
    return prompts


def token_count(text: str, tokenizer: Tokenizer) -> int:
    """Tokens CLIP sees for ``text`` before truncation, start and end tokens included."""
    return len(tokenizer.encode(text)) + 2


def longest_prompt(template: str | Template, tokenizer: Tokenizer) -> tuple[int, str]:
    """The worst case over axes and over which name follows "and", with all 21 names.

    Returns (token count, prompt). BPE works on whole words, so the order of the other names does
    not change the count.
    """
    worst = (0, "")
    for fmt in _resolve(template):
        for last in range(NUM_JOINTS):
            names = [n for j, n in enumerate(JOINT_NAMES) if j != last] + [JOINT_NAMES[last]]
            text = fmt.format(joints=join_names(names))
            worst = max(worst, (token_count(text, tokenizer), text))
    return worst


def check_fits(template: str | Template, tokenizer: Tokenizer) -> int:
    """Raise ValueError when the template's longest prompt would be truncated; return its length."""
    count, text = longest_prompt(template, tokenizer)
    if count > tokenizer.context_length:
        raise ValueError(
            f"prompt template {template!r} needs {count} tokens, more than the context length "
            f"{tokenizer.context_length}; CLIP would silently cut the tail of: {text!r}"
        )
    return count
