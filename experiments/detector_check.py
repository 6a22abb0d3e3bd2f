"""Do the renders look like hands to a detector trained on real photos? (issue: realism)

An independent check, outside the project's dependencies: MediaPipe Hands 0.10.14 (palm detector
+ 21-landmark model, trained on real photos; the wheel ships its models, so it runs offline) in its
own virtual environment:

    python3 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.14
    /tmp/mp/bin/python experiments/detector_check.py data/raw --split training --n 300

For images in FreiHAND's layout it prints the share where a hand is found and, where found, the
PCK of its 2D landmarks against our labels at 0.2 of the hand's size (the longer side of the
labels' 2D box). MediaPipe orders its 21 landmarks as FreiHAND does. ``--sheet`` writes a contact
sheet of the first 16 images with the detector's landmarks drawn (none where it found no hand).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mediapipe as mp
import numpy as np
from PIL import Image, ImageDraw


def labels_uv(root: Path, split: str) -> np.ndarray:
    xyz = np.asarray(json.loads((root / f"{split}_xyz.json").read_text()))
    K = np.asarray(json.loads((root / f"{split}_K.json").read_text()))
    p = np.einsum("nij,nkj->nki", K, xyz)
    return p[..., :2] / p[..., 2:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--split", default="training")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--stride", type=int, default=1, help="every k-th image (training: 4 backgrounds per pose)")
    ap.add_argument("--sheet", type=Path)
    ap.add_argument("--found", type=Path, help="write each image's result here (0/1 per line)")
    args = ap.parse_args()
    uv = labels_uv(args.root, args.split)
    files = sorted((args.root / args.split / "rgb").glob("*.jpg"))[:: args.stride][: args.n]
    found, pck, tiles = [], [], []
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=1, min_detection_confidence=0.5) as hands:
        for f in files:
            image = np.asarray(Image.open(f).convert("RGB"))
            h, w = image.shape[:2]
            res = hands.process(image)
            gt = uv[int(f.stem) % len(uv)]
            hit = bool(res.multi_hand_landmarks)
            found.append(hit)
            pred = None
            if hit:
                pred = np.array([(p.x * w, p.y * h) for p in res.multi_hand_landmarks[0].landmark])
                size = (gt.max(0) - gt.min(0)).max()
                pck.append((np.linalg.norm(pred - gt, axis=1) < 0.2 * size).mean())
            if args.sheet and len(tiles) < 16:
                tile = Image.fromarray(image)
                draw = ImageDraw.Draw(tile)
                for x, y in (pred if pred is not None else []):
                    draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(0, 255, 0))
                draw.text((4, 4), "hand" if hit else "none", fill=(255, 255, 0))
                tiles.append(tile)
    print(f"{args.root} {args.split}: hand found in {np.mean(found):.1%} of {len(found)} images; "
          f"PCK@0.2 where found {np.mean(pck) if pck else float('nan'):.2f}")
    if args.found:
        args.found.write_text("".join(f"{int(f)}\n" for f in found))
    if args.sheet:
        s = tiles[0].size[0]
        sheet = Image.new("RGB", (4 * s, 4 * s))
        for i, t in enumerate(tiles):
            sheet.paste(t, ((i % 4) * s, (i // 4) * s))
        sheet.save(args.sheet)


if __name__ == "__main__":
    main()
