"""The hand skeleton in FreiHAND's joint order: names, kinematic tree, mesh landmarks.

FreiHAND (and MANO-based data) order the 21 joints as the wrist, then each finger from its base
to its tip: thumb 1-4, index 5-8, middle 9-12, ring 13-16, little 17-20. The thumb's joints are,
anatomically, the carpometacarpal (CMC), metacarpophalangeal (MCP) and interphalangeal (IP) joints;
the other fingers have MCP, PIP and DIP joints.
"""

from __future__ import annotations

NUM_JOINTS = 21
NUM_VERTS = 778

FINGERS = ("thumb", "index", "middle", "ring", "little")

JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb CMC", "thumb MCP", "thumb IP", "thumb tip",
    "index MCP", "index PIP", "index DIP", "index tip",
    "middle MCP", "middle PIP", "middle DIP", "middle tip",
    "ring MCP", "ring PIP", "ring DIP", "ring tip",
    "little MCP", "little PIP", "little DIP", "little tip",
)

# Parent of each joint in the kinematic tree (-1 for the root).
PARENTS: tuple[int, ...] = (
    -1,
    0, 1, 2, 3,
    0, 5, 6, 7,
    0, 9, 10, 11,
    0, 13, 14, 15,
    0, 17, 18, 19,
)

# Bones as (parent, child) pairs, for drawing skeletons.
BONES: tuple[tuple[int, int], ...] = tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)

# Fingertip joints (4, 8, 12, 16, 20) coincide with these mesh vertices in FreiHAND's 778-vertex
# topology (thumb ... little).
FINGERTIP_JOINTS: tuple[int, ...] = (4, 8, 12, 16, 20)
FINGERTIP_VERTS: tuple[int, ...] = (744, 320, 443, 555, 672)

# FreiHAND's `scale` is the length of the middle finger's MCP-PIP bone.
SCALE_BONE: tuple[int, int] = (9, 10)

# One colour per finger (RGB), wrist bones take the finger's colour.
FINGER_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 60, 60), (240, 170, 40), (60, 190, 80), (50, 140, 230), (170, 80, 220),
)


def finger_of(joint: int) -> int:
    """Index into FINGERS of the finger a joint belongs to (the wrist counts as -1)."""
    return -1 if joint == 0 else (joint - 1) // 4
