"""Stage ``zeroshot``: image → prompt retrieval per axis over the evaluation split at every batch
size, and the seed README's demo figure."""

from __future__ import annotations

import logging

from cliphand import tracking, zeroshot
from cliphand.config import Params
from cliphand.data.dataset import HandDataset
from cliphand.devices import resolve_device
from cliphand.figures.zeroshot import zeroshot_curve, zeroshot_figure
from cliphand.files import write_csv, write_json
from cliphand.models.io import load_model
from cliphand.outputs import dataset_outputs
from cliphand.paths import METRICS, MODEL_FILES, PLOTS, PROCESSED
from cliphand.stages import log_artifacts, log_final, run_stage, sections

log = logging.getLogger(__name__)


def zero_shot(params: Params, raw: dict) -> dict:
    cfg = params.zeroshot
    model = load_model(MODEL_FILES["finetune"])
    device = resolve_device(params.finetune.device)
    model.to(device)
    dataset = HandDataset(PROCESSED, "eval", params.model.depth_range, params.prompts.template)
    with tracking.stage_run("zeroshot", sections(raw, "zeroshot", "prompts")):
        pred = dataset_outputs(model, dataset, max(cfg.batch_sizes), device, with_mesh=False, desc="zeroshot")
        sizes = [n for n in cfg.batch_sizes if n <= len(dataset)]
        if len(sizes) < len(cfg.batch_sizes):
            log.warning("zeroshot: batch sizes above the %d evaluation images skipped", len(dataset))
        features = zeroshot.split_features(pred)
        table = zeroshot.zeroshot_table(features, batch_sizes=sizes)
        flat = {
            f"{axis}_{key}_bs{n}": float(row[key])
            for axis, by_n in table.items() for n, row in by_n.items()
            for key in ("top1", "top5", "mean_prob", "chance")
        }
        rows = [
            {"batch_size": n, **{f"{axis}_{key}": table[axis][n][key] for axis in "xyz" for key in ("top1", "mean_prob", "chance")}}
            for n in sizes
        ]
        write_json(METRICS / "zeroshot.json", {"table": {a: {str(n): r for n, r in t.items()} for a, t in table.items()}})
        write_csv(PLOTS / "zeroshot.csv", rows)
        n_fig = min(cfg.figure_batch_size, len(dataset))
        probs = [
            zeroshot.batch_probabilities(f.pose_feats, f.text_feats, f.logit_scale, n_fig) for f in features.values()
        ]
        figure = zeroshot_figure(
            dataset.images[cfg.figure_index], probs, pred["prompts"][:n_fig], cfg.figure_index,
            PLOTS / "zeroshot_demo.png",
        )
        curve = zeroshot_curve(rows, PLOTS / "zeroshot_accuracy.png")
        log_final(flat)
        log_artifacts(figure, curve)
    return table


if __name__ == "__main__":
    run_stage("zeroshot", zero_shot)
