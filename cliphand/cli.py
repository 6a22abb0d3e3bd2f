"""The ``cliphand`` command: data, prompts and the README report, with one-line errors."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np


def _data_generate(args: argparse.Namespace) -> None:
    from cliphand.data.synthetic import generate

    print(json.dumps(generate(args.out, args.n_train, args.n_eval, args.size, args.seed, args.workers)))


def _data_download(args: argparse.Namespace) -> None:
    from cliphand.data.download import fetch_freihand

    print(fetch_freihand(args.out))


def _data_show(args: argparse.Namespace) -> None:
    from cliphand import viz
    from cliphand.data.freihand import FreiHAND
    from cliphand.geometry import project
    import torch

    reader = FreiHAND(args.root, args.split, load_verts=False)
    if reader.xyz is None:
        raise ValueError(f"{args.root}: split {args.split!r} has no joint annotations to draw")
    count = min(args.n, len(reader))
    samples = [reader[i] for i in range(count)]
    uvs = [project(torch.from_numpy(s.xyz), torch.from_numpy(s.K)).numpy() for s in samples]
    sheet = viz.contact_sheet([s.image for s in samples], uvs, ncols=int(np.ceil(np.sqrt(count))))
    print(viz.save_png(sheet, args.out))


def _prompts(args: argparse.Namespace) -> None:
    from cliphand.data.freihand import FreiHAND
    from cliphand.text.prompts import AXES, make_prompts

    reader = FreiHAND(args.root, args.split, load_verts=False)
    if reader.xyz is None:
        raise ValueError(f"{args.root}: split {args.split!r} has no joint annotations")
    pose = reader.pose_of(args.index)
    for axis, prompt in zip(AXES, make_prompts(reader.xyz[pose], template=args.template)[0]):
        print(f"{axis}: {prompt}")


def _preset(args: argparse.Namespace) -> None:
    from cliphand.presets import apply_preset

    print(f"{apply_preset(args.name, args.params)}: preset {args.name} applied; now `dvc exp run` or `dvc repro`")


def _export(args: argparse.Namespace) -> None:
    from cliphand.models.export import export_model
    from cliphand.models.io import load_model

    print(f"{export_model(load_model(args.model), args.out, args.format)}: {args.format} inference model, "
          "images [B, 3, S, S] in [0, 1] -> 2.5D joints and vertices [B, 799, 3]")


def _report(args: argparse.Namespace) -> int:
    from cliphand.report import main as report

    return report(["--check"] if args.check else [])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (``--help`` shows defaults)."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="cliphand", description="CLIP-Hand3D: 3D hand pose and mesh from one RGB image.", formatter_class=fmt)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="generate, download or look at datasets", formatter_class=fmt)
    data_verbs = data.add_subparsers(dest="data_verb", required=True)
    gen = data_verbs.add_parser("generate", help="synthetic hands in FreiHAND's layout", formatter_class=fmt)
    gen.add_argument("--out", type=Path, default=Path("data/raw"))
    gen.add_argument("--n-train", type=int, default=1000, help="training poses (4 images each)")
    gen.add_argument("--n-eval", type=int, default=250, help="evaluation poses")
    gen.add_argument("--size", type=int, default=224, help="image size in pixels")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--workers", type=int, default=2)
    gen.set_defaults(func=_data_generate)
    dl = data_verbs.add_parser("download", help="fetch FreiHAND (about 4.4 GB)", formatter_class=fmt)
    dl.add_argument("--out", type=Path, default=Path("data/raw"))
    dl.set_defaults(func=_data_download)
    show = data_verbs.add_parser("show", help="a contact sheet with skeletons", formatter_class=fmt)
    show.add_argument("--root", type=Path, default=Path("data/raw"))
    show.add_argument("--split", default="training", choices=("training", "evaluation"))
    show.add_argument("--n", type=int, default=16, help="number of images")
    show.add_argument("--out", type=Path, default=Path("contact_sheet.png"))
    show.set_defaults(func=_data_show)

    prompts = verbs.add_parser("prompts", help="the x, y and z prompts of a sample", formatter_class=fmt)
    prompts.add_argument("index", type=int, help="image index in the split")
    prompts.add_argument("--root", type=Path, default=Path("data/raw"))
    prompts.add_argument("--split", default="training", choices=("training", "evaluation"))
    prompts.add_argument("--template", default="hand_joints")
    prompts.set_defaults(func=_prompts)

    preset = verbs.add_parser("preset", help="merge presets/NAME.yaml into params.yaml", formatter_class=fmt)
    preset.add_argument("name", help="e.g. paper")
    preset.add_argument("--params", type=Path, default=Path("params.yaml"))
    preset.set_defaults(func=_preset)

    export = verbs.add_parser("export", help="write the inference model as TorchScript or torch.export", formatter_class=fmt)
    export.add_argument("model", type=Path, nargs="?", default=Path("models/model.pt"), help="a model file of the pipeline")
    export.add_argument("--out", type=Path, default=Path("models/model.ts"))
    export.add_argument("--format", default="torchscript", choices=("torchscript", "torch.export"))
    export.set_defaults(func=_export)

    report = verbs.add_parser("report", help="render the README's tables from metrics/", formatter_class=fmt)
    report.add_argument("--check", action="store_true", help="fail if the README is out of date")
    report.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a verb; a user's mistake prints one line and exits 1 (``--debug`` for the traceback)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args) or 0
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        if args.debug:
            raise
        print(f"cliphand: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
