"""Two contact sheets side by side under their titles: the README's before/after of the renders.

    python experiments/before_after.py before.png "before (a0d65b9)" after.png "after" --out docs/renders_before_after.png

The sheets come from ``experiments/detector_check.py --sheet`` (the first 16 evaluation images,
the real-trained detector's landmarks drawn where it found a hand) run on each dataset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

TITLE_HEIGHT, GAP = 28, 12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("left", type=Path)
    ap.add_argument("left_title")
    ap.add_argument("right", type=Path)
    ap.add_argument("right_title")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--width", type=int, default=1000, help="of the whole figure, pixels")
    args = ap.parse_args()
    sheets = [Image.open(p).convert("RGB") for p in (args.left, args.right)]
    side = (args.width - GAP) // 2
    sheets = [s.resize((side, side * s.height // s.width), Image.Resampling.LANCZOS) for s in sheets]
    height = TITLE_HEIGHT + max(s.height for s in sheets)
    out = Image.new("RGB", (args.width, height), "white")
    draw = ImageDraw.Draw(out)
    for i, (sheet, title) in enumerate(zip(sheets, (args.left_title, args.right_title))):
        x = i * (side + GAP)
        out.paste(sheet, (x, TITLE_HEIGHT))
        draw.text((x + 4, 8), title, fill="black")
    out.save(args.out)


if __name__ == "__main__":
    main()
