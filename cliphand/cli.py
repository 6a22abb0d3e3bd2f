"""The ``cliphand`` command: predictions, the zero-shot demo, prompts, data, presets, exports, the
conversion of old model files and the README report, with one-line errors."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from cliphand.config import TEMPLATE_NAMES
from cliphand.crop import parse_bbox, parse_intrinsics
from cliphand.tracking import tracking_uri

log = logging.getLogger("cliphand")
DEFAULT_MODEL = "models/model.pt"  # what `dvc repro` writes


def _checked(parse):
    """An argparse ``type`` from a parser that raises ValueError: its message becomes the error."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__
    return convert


def _count(minimum: int):
    """An argparse ``type``: an integer of at least ``minimum``."""

    def count(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return _checked(count)


def _data_generate(args: argparse.Namespace) -> None:
    from cliphand.data.synthetic import generate

    print(json.dumps(generate(args.out, args.n_train, args.n_eval, args.size, args.seed, args.workers)))


def _data_download(args: argparse.Namespace) -> None:
    from cliphand.data.download import fetch_freihand

    print(fetch_freihand(args.out))


def _data_show(args: argparse.Namespace) -> None:
    from cliphand import viz
    from cliphand.camera import project
    from cliphand.data.freihand import FreiHAND

    reader = FreiHAND(args.root, args.split, load_verts=False)
    if reader.xyz is None:
        raise ValueError(f"{args.root}: split {args.split!r} has no joint annotations to draw")
    count = min(args.n, len(reader))
    samples = [reader[i] for i in range(count)]
    uvs = [project(s.xyz, s.K) for s in samples]
    sheet = viz.contact_sheet([s.image for s in samples], uvs, ncols=int(np.ceil(np.sqrt(count))))
    print(viz.save_png(sheet, args.out))


def _prompts(args: argparse.Namespace) -> None:
    from cliphand.text.prompts import AXES, make_prompts

    if args.sample.isdigit():
        from cliphand.data.freihand import FreiHAND

        reader = FreiHAND(args.root, args.split, load_verts=False)
        if reader.xyz is None:
            raise ValueError(f"{args.root}: split {args.split!r} has no joint annotations")
        xyz = reader.xyz[reader.pose_of(int(args.sample))]
    else:
        from cliphand.predict import predict_hand, read_image
        from cliphand.serving import load_predictor

        path = Path(args.sample)
        if not path.is_file():
            raise ValueError(f"{path}: neither an image index nor an image file")
        photo = read_image(path)
        _warn_without_box(args)
        xyz = predict_hand(load_predictor(args.model, args.tracking_uri), photo, args.bbox).joints
    for axis, prompt in zip(AXES, make_prompts(xyz, template=args.template)[0]):
        print(f"{axis}: {prompt}")


def _predict(args: argparse.Namespace) -> None:
    from cliphand.images import image_files
    from cliphand.predict import predict_files
    from cliphand.serving import load_predictor

    files = image_files(args.images)
    predictor = load_predictor(args.model, args.tracking_uri)
    _warn_without_box(args)
    for paths in predict_files(predictor, files, args.out, args.model, args.bbox, args.intrinsics):
        print(" ".join(str(p) for p in paths.values()))


def _warn_without_box(args: argparse.Namespace) -> None:
    if args.bbox is None:
        log.warning("no --bbox: cropping the centre square of each image; give --bbox x,y,w,h "
                    "when the hand does not fill it")


def _zeroshot(args: argparse.Namespace) -> None:
    import torch
    from torch.utils.data import Subset

    from cliphand import zeroshot
    from cliphand.data.dataset import HandDataset
    from cliphand.figures.zeroshot import zeroshot_figure
    from cliphand.outputs import dataset_outputs
    from cliphand.predict import load_model_file

    model = load_model_file(args.model)
    if model.text is None:
        raise ValueError(f"{args.model}: this model has no text encoder, which zero-shot retrieval needs")
    dataset = HandDataset(args.data, "eval", model.cfg.depth_range, args.template)
    if not dataset.has_targets:
        raise ValueError(f"{args.data}/eval.npz: no joint annotations, so no prompts to retrieve")
    if dataset.size != model.cfg.image_size:
        raise ValueError(f"{args.data}: images of {dataset.size} px, but the model reads {model.cfg.image_size} px")
    n, i = args.batch_size, args.index
    if n > len(dataset):
        raise ValueError(f"--batch-size {n}: the evaluation split has only {len(dataset)} images")
    if i >= n:
        raise ValueError(f"--index {i}: must be below --batch-size {n}")
    pred = dataset_outputs(model, Subset(dataset, range(n)), n, torch.device("cpu"), with_mesh=False, desc="zeroshot")
    probs = [
        zeroshot.batch_probabilities(pred["pose_feats"][a], pred["text_feats"][a], float(pred["logit_scales"][a]), n)
        for a in range(3)
    ]
    shown = ", ".join(f"{axis}: {p[i, i]:.2%}" for axis, p in zip("xyz", probs))
    print(f"batch size = {n}, id = {i}, p(own prompt | image): {shown} (chance {1 / n:.2%})")
    print(zeroshot_figure(dataset.images[i], probs, pred["prompts"], i, args.out))


def _preset(args: argparse.Namespace) -> None:
    from cliphand.config import apply_preset

    print(f"{apply_preset(args.name, args.params)}: preset {args.name} applied; now `dvc exp run` or `dvc repro`")


def _export(args: argparse.Namespace) -> None:
    from cliphand.models.export import export_model
    from cliphand.models.io import load_model

    print(f"{export_model(load_model(args.model), args.out, args.format)}: {args.format} inference model, "
          "images [B, 3, S, S] in [0, 1] -> 2.5D joints and vertices [B, 799, 3]")


def _convert(args: argparse.Namespace) -> None:
    from cliphand.models.io import convert_model

    print(f"{convert_model(args.old, args.new)}: converted from {args.old} (the safe format)")


def _report(args: argparse.Namespace) -> int:
    from cliphand.report import main as report

    return report(["--check"] if args.check else [])


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="a model file, or an MLflow registry URI: models:/cliphand3d@champion (the model "
                             "`dvc repro` registered last), models:/cliphand3d/VERSION, runs:/RUN_ID/model")
    parser.add_argument("--tracking-uri", default=tracking_uri(),
                        help="the MLflow store for models:/ URIs ($MLFLOW_TRACKING_URI when set)")
    parser.add_argument("--bbox", type=_checked(parse_bbox), metavar="X,Y,W,H",
                        help="the hand's box in pixels of the image; none: the centre square, with a warning")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb (``--help`` shows defaults)."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="cliphand", description="CLIP-Hand3D: 3D hand pose and mesh from one RGB image.", formatter_class=fmt)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="generate, download or look at datasets", formatter_class=fmt)
    data_verbs = data.add_subparsers(dest="data_verb", required=True)
    gen = data_verbs.add_parser("generate", help="synthetic hands in FreiHAND's layout", formatter_class=fmt)
    gen.add_argument("--out", type=Path, default=Path("data/raw"), help="dataset root")
    gen.add_argument("--n-train", type=int, default=1000, help="training poses (4 images each)")
    gen.add_argument("--n-eval", type=int, default=250, help="evaluation poses")
    gen.add_argument("--size", type=int, default=224, help="image size in pixels")
    gen.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same images")
    gen.add_argument("--workers", type=int, default=2, help="processes")
    gen.set_defaults(func=_data_generate)
    dl = data_verbs.add_parser("download", help="fetch FreiHAND (about 4.4 GB)", formatter_class=fmt)
    dl.add_argument("--out", type=Path, default=Path("data/raw"), help="dataset root")
    dl.set_defaults(func=_data_download)
    show = data_verbs.add_parser("show", help="a contact sheet with skeletons", formatter_class=fmt)
    show.add_argument("--root", type=Path, default=Path("data/raw"), help="dataset root")
    show.add_argument("--split", default="training", choices=("training", "evaluation"), help="split to show")
    show.add_argument("--n", type=_count(1), default=16, help="number of images")
    show.add_argument("--out", type=Path, default=Path("contact_sheet.png"), help="PNG to write")
    show.set_defaults(func=_data_show)

    predict = verbs.add_parser("predict", help="3D joints, mesh and a figure for each image", formatter_class=fmt)
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files, or folders of images")
    _model_arguments(predict)
    predict.add_argument("--out", type=Path, default=Path("predictions"), help="folder for <image>.json/.ply/.png")
    predict.add_argument("--intrinsics", type=_checked(parse_intrinsics), metavar="FX,FY,CX,CY",
                         help="the camera's intrinsics in pixels of the image; none: FreiHAND-like, depth approximate")
    predict.set_defaults(func=_predict)

    zs = verbs.add_parser("zeroshot", help="one evaluation image against N prompts per axis (the seed's demo)",
                          formatter_class=fmt)
    zs.add_argument("--batch-size", type=_count(2), default=16, help="N: the first N evaluation images and their prompts")
    zs.add_argument("--index", type=_count(0), default=5, help="the image of the batch to show")
    zs.add_argument("--model", default=DEFAULT_MODEL, help="a model file with its text encoder")
    zs.add_argument("--data", type=Path, default=Path("data/processed"), help="the preprocessed evaluation split")
    zs.add_argument("--template", default="hand_joints", choices=TEMPLATE_NAMES, help="the prompt template the model was trained with")
    zs.add_argument("--out", type=Path, default=Path("zeroshot.png"), help="PNG to write")
    zs.set_defaults(func=_zeroshot)

    prompts = verbs.add_parser("prompts", help="the x, y and z prompts of a sample or of a prediction",
                               formatter_class=fmt)
    prompts.add_argument("sample", metavar="INDEX_OR_IMAGE",
                         help="an image index of the split (its annotated joints), or an image file (the joints "
                              "the model predicts for it)")
    prompts.add_argument("--root", type=Path, default=Path("data/raw"), help="dataset root, for an index")
    prompts.add_argument("--split", default="training", choices=("training", "evaluation"), help="split, for an index")
    prompts.add_argument("--template", default="hand_joints", choices=TEMPLATE_NAMES, help="prompt template (cliphand/text/prompts.py)")
    _model_arguments(prompts)
    prompts.set_defaults(func=_prompts)

    preset = verbs.add_parser("preset", help="merge presets/NAME.yaml into params.yaml", formatter_class=fmt)
    preset.add_argument("name", help="e.g. paper")
    preset.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file to rewrite")
    preset.set_defaults(func=_preset)

    export = verbs.add_parser("export", help="write the inference model as TorchScript or torch.export", formatter_class=fmt)
    export.add_argument("model", type=Path, nargs="?", default=Path("models/model.pt"), help="a model file of the pipeline")
    export.add_argument("--out", type=Path, default=Path("models/model.ts"), help="the file to write")
    export.add_argument("--format", default="torchscript", choices=("torchscript", "torch.export"),
                        help="TorchScript (trace) or a torch.export program (dynamic batch)")
    export.set_defaults(func=_export)

    convert = verbs.add_parser("convert", help="rewrite a model file of the old, pickled format in the safe one "
                               "(loading the old file runs code it names: only a file you trust)", formatter_class=fmt)
    convert.add_argument("old", type=Path, help="the pickled model file")
    convert.add_argument("new", type=Path, nargs="?", help="the file to write; none: replace OLD")
    convert.set_defaults(func=_convert)

    report = verbs.add_parser("report", help="render the README's tables from metrics/", formatter_class=fmt)
    report.add_argument("--check", action="store_true", help="fail if the README is out of date")
    report.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a verb; a user's mistake prints one line and exits 1 (``--debug`` for the traceback)."""
    args = build_parser().parse_args(argv)
    # Model building and tokenizer notes are noise to a user: INFO only with --debug.
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args) or 0
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        if args.debug:
            raise
        print(f"cliphand: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
