"""README tables rendered from the committed ``metrics/*.json`` of the default ``dvc repro``.

The README holds blocks between ``<!-- cliphand:NAME -->`` and ``<!-- /cliphand:NAME -->``;
``python -m cliphand.report`` rewrites them from the metrics, and ``--check`` (run by the tests)
fails when the README and the metrics disagree, so no number in the README is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from cliphand.ablation import COLUMNS
from cliphand.files import write_text
from cliphand.metrics import REPORTED

# The paper's FreiHAND results, as published (mm; their own evaluator, see docs in the README).
PAPER = {"pa_mpjpe_mm": 6.47, "auc_j_aligned": 0.871}


def _load(metrics_dir: Path, name: str) -> dict:
    path = metrics_dir / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro` first")
    return json.loads(path.read_text())


def data_block(metrics_dir: Path) -> str:
    """Synthetic generation: images, size on disk, throughput."""
    d = _load(metrics_dir, "data")
    p = _load(metrics_dir, "preprocess")
    return "\n".join([
        "| images generated | poses | disk | generation | train / val / eval images (preprocessed) |",
        "|---:|---:|---:|---:|---|",
        f"| {d['images']:,} | {d['poses']:,} | {d['bytes'] / 2**20:.0f} MiB | {d['images_per_s']:.0f} images/s "
        f"({d['seconds']:.0f} s) | {p['train_images']:,} / {p['val_images']:,} / {p['eval_images']:,} at {p['image_size']} px |",
    ])


def zeroshot_block(metrics_dir: Path) -> str:
    """Top-1 / top-5 / mean probability per axis and batch size, with chance."""
    t = _load(metrics_dir, "zeroshot")["table"]
    sizes = sorted(t["x"], key=int)
    rows = [
        "| batch N | chance | x top-1 | y top-1 | z top-1 | x top-5 | y top-5 | z top-5 | x / y / z mean p(right prompt) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n in sizes:
        r = {a: t[a][n] for a in "xyz"}
        rows.append(
            f"| {n} | {r['x']['chance']:.1%} | "
            + " | ".join(f"{r[a]['top1']:.1%}" for a in "xyz") + " | "
            + " | ".join(f"{r[a]['top5']:.1%}" for a in "xyz") + " | "
            + " / ".join(f"{r[a]['mean_prob']:.1%}" for a in "xyz") + " |"
        )
    return "\n".join(rows)


def evaluate_block(metrics_dir: Path) -> str:
    """FreiHAND-protocol metrics of the model beside the baseline, where the error comes from, smoothness."""
    e = _load(metrics_dir, "evaluate")
    m, b = e["model"], e["baseline"]
    rows = ["| metric (synthetic evaluation split) | cliphand | baseline | cliphand ÷ baseline |", "|---|---:|---:|---:|"]
    rows += [f"| {r.heading} | {r.format(m[r.key])} | {r.format(b[r.key])} | {m[r.key] / b[r.key]:.2f} |" for r in REPORTED]
    src, n = e["error_sources"], e["network"]
    rows += [
        f"| PA-MPJPE / PA-MPVPE, the network alone (no pose prior) (mm) | {n['pa_mpjpe_mm']:.2f} / "
        f"{n['pa_mpvpe_mm']:.2f} | | {n['pa_mpjpe_mm'] / b['pa_mpjpe_mm']:.2f} / {n['pa_mpvpe_mm'] / b['pa_mpvpe_mm']:.2f} |",
        f"| PA-MPJPE, predicted u, v with true depth (mm) | {src['pa_mpjpe_mm_uv_only']:.2f} | | |",
        f"| PA-MPJPE, true u, v with predicted depth (mm) | {src['pa_mpjpe_mm_depth_only']:.2f} | | |",
        f"| root depth error, signed mean / mean magnitude (mm) | {src['root_depth_error_mm']:+.1f} / "
        f"{src['root_depth_abs_error_mm']:.1f} | {b['root_depth_error_mm']:+.1f} / {b['root_depth_abs_error_mm']:.1f} | "
        f"{src['root_depth_abs_error_mm'] / b['root_depth_abs_error_mm']:.2f} |",
    ]
    s = e.get("smoothness")
    if s:
        rows.append(f"| mesh \\|Laplacian\\| per vertex, model / truth (mm) | {s['model_laplacian_mm']:.2f} / "
                    f"{s['truth_laplacian_mm']:.2f} | | {s['ratio']:.2f} (model ÷ truth) |")
    return "\n".join(rows)


def ablation_block(metrics_dir: Path) -> str:
    """Every variant's mean ± sd over its seeds (``python -m cliphand.ablation``)."""
    a = _load(metrics_dir, "ablation")
    columns = [m for m, _, _ in COLUMNS]
    rows = [
        "| variant | `dvc exp run -S` | seeds | " + " | ".join(c.heading for c in columns) + " |",
        "|---|---|---:|" + "---:|" * len(columns),
    ]
    for r in a["rows"]:
        sets = " ".join(f"`{s}`" for s in r["sets"]) or "(params.yaml)"
        cells = [f"{c.format(r[c.key]['mean'])} ± {c.format(r[c.key]['sd'])}" for c in columns]
        rows.append(f"| {r['label']} | {sets} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# The benchmark's speed-ups in the order they are added (``cliphand.benchmark.STEPS``).
SPEED_STEPS = {
    "inference_mode": "+ inference mode", "channels_last": "+ channels_last", "bf16": "+ bf16 autocast",
    "compile": "+ torch.compile",
}


def speed_block(s: dict) -> str:
    """Inference speed (eager fp32 vs optimised, vs the bare backbone), each speed-up, training, data."""
    runs = [(name, dev, size, inf) for name, size in s["sizes"].items() for dev, inf in size["inference"].items()]
    one, many, train_batch = (s["batch_sizes"][k] for k in ("latency", "throughput", "train"))
    rows = [
        f"Measured on {'; '.join(f'{d}: {m}' for d, m in s['devices'].items())}; torch {s['torch']}; "
        f"{s['seconds']:.0f} s in all.",
        "",
        f"| size | device | params | GFLOPs / image (backbone) | latency at batch {one}, eager fp32: median / p90 | "
        f"optimised: median / p90 | speed-up | images/s at batch {many}, eager / optimised | "
        f"full ÷ backbone at batch {one} / {many}: eager; optimised |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, dev, size, inf in runs:
        lat, rate, ratio = inf["latency"], inf["images_per_s"], inf["full_over_backbone"]
        rows.append(
            f"| {name} ({size['model']}) | {dev} | {size['params_m']['total']:.1f} M | "
            f"{size['gflops_per_image']['full']:.2f} ({size['gflops_per_image']['backbone']:.2f}) | "
            f"{lat['baseline']['median_ms']:.1f} / {lat['baseline']['p90_ms']:.1f} ms | "
            f"{lat['optimised']['median_ms']:.1f} / {lat['optimised']['p90_ms']:.1f} ms | "
            f"{inf['speedup_over_baseline']:.2f}× | {rate['baseline']:.1f} / {rate['optimised']:.1f} | "
            f"{ratio['baseline_latency']:.2f}× / {ratio['baseline_throughput']:.2f}×; "
            f"{ratio['latency']:.2f}× / {ratio['throughput']:.2f}× |"
        )
    rows += [
        "",
        "| size | device | eager fp32 | " + " | ".join(SPEED_STEPS.values()) + " | largest output change (2.5D) |",
        "|---|---|---:|" + "---:|" * len(SPEED_STEPS) + "---:|",
    ]
    for name, dev, size, inf in runs:
        steps = inf["steps_median_ms"]
        cells = [f"{steps[k]:.1f} ms" if k in steps else "off" for k in SPEED_STEPS]
        rows.append(f"| {name} | {dev} | {steps['eager']:.1f} ms | " + " | ".join(cells) + f" | {inf['max_abs_diff_25d']:.1e} |")
    rows += ["", f"| size | device | training images/s at batch {train_batch}: pretrain / finetune | AMP |", "|---|---|---:|---|"]
    for name, size in s["sizes"].items():
        for dev, train in size["train_images_per_s"].items():
            amp = size["train_amp"][dev]
            rows.append(f"| {name} | {dev} | {train['pretrain']:.1f} / {train['finetune']:.1f} | {amp['pretrain']} / {amp['finetune']} |")
    d = s["data"]
    generation = "–" if d["generation_images_per_s"] is None else f"{d['generation_images_per_s']:.0f} images/s"
    rows += [
        "",
        f"Data: synthetic generation {generation} (download stage); the training loader delivers "
        f"{d['loader_samples_per_s']:.0f} samples/s from `data/processed` (batch {d['loader_batch_size']}, "
        f"{d['loader_workers']} workers).",
    ]
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[Path], str]] = {
    "data": data_block,
    "zeroshot": zeroshot_block,
    "evaluate": evaluate_block,
    "ablation": ablation_block,
    "speed": lambda metrics_dir: speed_block(_load(metrics_dir, "speed")),
}


def render(readme: str, metrics_dir: Path) -> str:
    """``readme`` with every known block re-rendered from ``metrics_dir``."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- cliphand:{name} -->)\n.*?(<!-- /cliphand:{name} -->)", re.DOTALL)
        if pattern.search(readme):
            table = make(metrics_dir)
            readme = pattern.sub(lambda m: f"{m.group(1)}\n{table}\n{m.group(2)}", readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--check", action="store_true", help="fail if the README is out of date")
    args = parser.parse_args(argv)
    current = args.readme.read_text()
    fresh = render(current, args.metrics)
    if args.check:
        if fresh != current:
            print(f"{args.readme} disagrees with {args.metrics}/: run `python -m cliphand.report`", file=sys.stderr)
            return 1
        return 0
    write_text(args.readme, fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
