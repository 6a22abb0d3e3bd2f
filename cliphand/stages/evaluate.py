"""Stage ``evaluate``: FreiHAND's protocol on the evaluation split beside the strongest simple
baselines (``cliphand.evaluation``), where the error comes from, the mesh's smoothness, the PCK
curves, the README's prediction figure (drawn as ``cliphand predict`` draws), and the training
stages' curves from their CSVs (drawn here, so a change to that figure does not retrain)."""

from __future__ import annotations

import numpy as np
import torch

from cliphand import evaluation, metrics, tracking, viz
from cliphand.config import ConfigError, Params
from cliphand.data.dataset import HandDataset
from cliphand.devices import resolve_device
from cliphand.figures.curves import training_curves
from cliphand.figures.evaluation import pck_figure, smoothness_figure
from cliphand.files import read_csv, write_csv, write_json
from cliphand.models.io import load_model
from cliphand.outputs import dataset_outputs
from cliphand.paths import DOCS, METRICS, MODEL_FILES, PLOTS, PROCESSED
from cliphand.stages import log_artifacts, log_final, run_stage, sections


def evaluate(params: Params, raw: dict) -> dict:
    model = load_model(MODEL_FILES["finetune"])
    device = resolve_device(params.finetune.device)
    model.to(device)
    dataset = HandDataset(PROCESSED, "eval", params.model.depth_range, params.prompts.template)
    if not dataset.has_targets:
        raise RuntimeError(f"{PROCESSED}/eval.npz has no xyz/verts: fetch the evaluation annotations first")
    example = params.evaluate.figure_index
    if example >= len(dataset):
        raise ConfigError(f"evaluate.figure_index: {example} is past the {len(dataset)} evaluation images")
    # Read before any output is written: a missing file stops the stage with nothing half-done.
    curves = {phase: (read_csv(PLOTS / f"{phase}.csv"), read_csv(PLOTS / f"{phase}_steps.csv"))
              for phase in ("pretrain", "finetune")}
    with tracking.stage_run("evaluate", sections(raw, "evaluate")):
        # The network alone once, then the pose prior the finetune stage fitted on top: what the prior adds.
        bare = dataset_outputs(model, dataset, params.evaluate.batch_size, device, with_text=False,
                               desc="evaluate", with_prior=False)
        with torch.inference_mode():
            joints, verts = model.prior.cpu()(torch.from_numpy(bare["joints_cam"]), torch.from_numpy(bare["verts_cam"]))
        pred = {**bare, "joints_cam": joints.numpy(), "verts_cam": verts.numpy()}
        gt_xyz, gt_verts = dataset.ann["xyz"], dataset.ann["verts"].astype(np.float64)
        ours = evaluation.summary(gt_xyz, gt_verts, pred["joints_cam"], pred["verts_cam"])
        with np.load(PROCESSED / "train.npz") as train:
            base = evaluation.baseline({k: train[k] for k in ("xyz", "verts", "K", "scale")}, gt_xyz, gt_verts,
                                       dataset.ann["K"], dataset.ann["scale"])
        faces = model.hierarchy.faces
        result = {
            "model": metrics.reported(ours),
            "baseline": metrics.reported(base) | {k: base[k] for k in evaluation.ROOT_DEPTH_KEYS},
            "network": metrics.reported(evaluation.summary(gt_xyz, gt_verts, bare["joints_cam"], bare["verts_cam"])),
            "error_sources": evaluation.error_sources(pred["joints25d"], pred["joints_cam"], dataset),
            "smoothness": evaluation.smoothness(pred["verts_cam"], gt_verts, faces),
        }
        write_json(METRICS / "evaluate.json", result)
        pck = [
            {"threshold_mm": t, "model_joints": a, "model_verts": b, "baseline_joints": c}
            for t, a, b, c in zip(
                ours["pck_curve_j_aligned"]["thresholds_mm"], ours["pck_curve_j_aligned"]["pck"],
                ours["pck_curve_v_aligned"]["pck"], base["pck_curve_j_aligned"]["pck"],
            )
        ]
        write_csv(PLOTS / "pck.csv", pck)
        figures = [pck_figure(pck, PLOTS / "pck.png")]
        figures += [training_curves(*rows, PLOTS / f"{phase}_curves.png", title=phase) for phase, rows in curves.items()]
        if faces is not None:
            figures.append(smoothness_figure(
                evaluation.laplacian_mm(pred["verts_cam"], faces), evaluation.laplacian_mm(gt_verts, faces),
                PLOTS / "smoothness.png",
            ))
        # The README's picture, drawn as `cliphand predict` draws, beside the truth through the same code.
        rows = [
            viz.prediction_panels(dataset.images[example], dataset.ann["K"][example], joints, verts,
                                  faces, title=who)
            for who, joints, verts in (("prediction", pred["joints_cam"][example], pred["verts_cam"][example]),
                                       ("truth", gt_xyz[example], gt_verts[example]))
        ]
        picture = viz.save_png(viz.stack_rows(rows), DOCS / "prediction.png")
        log_final({f"{who}_{k}": v for who, r in result.items() for k, v in r.items()})
        log_artifacts(*figures, picture)
    return result


if __name__ == "__main__":
    run_stage("evaluate", evaluate)
