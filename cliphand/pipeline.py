"""The work of each DVC stage, as functions of the typed params (``stages/*.py`` only call these).

Paths are fixed here and mirrored in dvc.yaml: ``data/`` (raw and processed data), ``models/``
(model files), ``metrics/`` (DVC metrics), ``plots/`` (DVC plots data and figures) and
``checkpoints/`` (resume state of a training stage, removed once the stage completes) and
``docs/`` (the README's prediction figure).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cliphand import metrics, plots, tracking, viz, zeroshot
from cliphand.checkpoint import load_checkpoint, load_model_state
from cliphand.config import ConfigError
from cliphand.data.dataset import HandDataset
from cliphand.files import write_csv, write_json
from cliphand.inference import predict_dataset
from cliphand.models.cliphand3d import CLIPHand3D, count_parameters
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.models.io import load_model, save_model
from cliphand.params import Params
from cliphand.training import distributed
from cliphand.training.trainer import resolve_device, seed_everything, train_phase

log = logging.getLogger(__name__)

PROCESSED = Path("data/processed")
MODELS = Path("models")
METRICS = Path("metrics")
PLOTS = Path("plots")
CHECKPOINTS = Path("checkpoints")
DOCS = Path("docs")
MODEL_FILES = {"pretrain": "pretrain.pt", "finetune": "model.pt"}


def _sections(raw: dict, *names: str) -> dict:
    return {name: raw.get(name) for name in names}


def download(params: Params, raw: dict) -> dict:
    """Generate the synthetic set, or fetch FreiHAND, into ``data.root``."""
    root = Path(params.data.root)
    with tracking.stage_run("download", _sections(raw, "data")):
        if params.data.source == "synthetic":
            from cliphand.data.synthetic import generate

            s = params.data.synthetic
            stats = generate(root, s.n_train, s.n_eval, s.image_size, s.seed, s.workers, views=s.views)
        else:
            from cliphand.data.download import fetch_freihand

            start = time.perf_counter()
            fetch_freihand(root)
            stats = {"seconds": time.perf_counter() - start}
        stats = {"source": params.data.source, **stats}
        _log_final(stats)
        write_json(METRICS / "data.json", stats)
        # The README's look at the data: the first 16 training images, skeletons drawn.
        from cliphand.data.synthetic import write_contact_sheet

        mlflow_log_artifacts(write_contact_sheet(root, DOCS / "contact_sheet.png"))
    return stats


def preprocess(params: Params, raw: dict) -> dict:
    """Resize, split and pack the data; build the mesh hierarchy."""
    from cliphand.data.preprocess import preprocess as run_preprocess

    with tracking.stage_run("preprocess", _sections(raw, "data", "preprocess")):
        stats = run_preprocess(Path(params.data.root), PROCESSED, params.preprocess)
        _log_final(stats)
        write_json(METRICS / "preprocess.json", stats)
    return stats


def _datasets(params: Params) -> tuple[HandDataset, HandDataset]:
    args = (params.model.depth_range, params.prompts.template)
    return HandDataset(PROCESSED, "train", *args), HandDataset(PROCESSED, "val", *args)


def train(params: Params, raw: dict, phase: str) -> dict:
    """Contrastive pretraining or fine-tuning; resumes from ``checkpoints/<phase>.pt`` after a kill.

    With ``train.nproc`` above 1 and no launcher around, the stage runs itself again under
    torchrun and returns the metrics its rank 0 wrote; under torchrun every process trains and
    rank 0 alone logs to MLflow and writes the model, metrics, plots and checkpoints.
    """
    cfg = getattr(params, phase)
    if params.train.nproc > 1 and not distributed.launched():
        distributed.relaunch(params.train.nproc)
        return json.loads((METRICS / f"{phase}.json").read_text())
    with distributed.process_group(cfg.device) as world:
        hierarchy = MeshHierarchy.load(PROCESSED / "hierarchy.npz")
        seed_everything(cfg.seed)  # the initial weights too: a seeded run reproduces its metrics
        model = CLIPHand3D(params.model, hierarchy)
        if phase == "finetune":
            source = MODELS / "pretrain.pt"
            load_model_state(model, load_checkpoint(source)["model"], source)
        train_set, val_set = _datasets(params)
        checkpoint = CHECKPOINTS / f"{phase}.pt"
        run_id = load_checkpoint(checkpoint).get("run", {}).get("mlflow_run_id") if checkpoint.is_file() else None
        if not world.is_main:
            return train_phase(model, cfg, phase, train_set, val_set, checkpoint).final
        logged = _sections(raw, "model", "prompts", "train", phase)
        with tracking.stage_run(phase, logged, run_id=run_id) as run:
            import mlflow

            if run_id is None:
                mlflow.log_params({f"n_params.{k}": v for k, v in count_parameters(model).items()})
            result = train_phase(
                model, cfg, phase, train_set, val_set, checkpoint,
                on_metrics=lambda m, step: mlflow.log_metrics(m, step=step),
                run_info={"mlflow_run_id": run.info.run_id},
            )
            model.cpu()
            save_model(model, MODELS / MODEL_FILES[phase])
            write_json(METRICS / f"{phase}.json", result.final)
            write_csv(PLOTS / f"{phase}.csv", result.history)
            figure = plots.training_curves(result.history, PLOTS / f"{phase}_curves.png", title=phase)
            mlflow.log_artifact(str(figure))
            if phase == "finetune":
                tracking.log_model(model, val_set)
        checkpoint.unlink(missing_ok=True)
    return result.final


def _eval_set(params: Params) -> HandDataset:
    return HandDataset(PROCESSED, "eval", params.model.depth_range, params.prompts.template)


def zero_shot(params: Params, raw: dict) -> dict:
    """Image → prompt retrieval per axis over the evaluation split, and the demo figure."""
    cfg = params.zeroshot
    model = load_model(MODELS / "model.pt")
    device = resolve_device(params.finetune.device)
    model.to(device)
    dataset = _eval_set(params)
    with tracking.stage_run("zeroshot", _sections(raw, "zeroshot", "prompts")):
        pred = predict_dataset(model, dataset, max(cfg.batch_sizes), device, with_mesh=False, desc="zeroshot")
        sizes = [n for n in cfg.batch_sizes if n <= len(dataset)]
        if len(sizes) < len(cfg.batch_sizes):
            log.warning("zeroshot: batch sizes above the %d evaluation images skipped", len(dataset))
        features = {
            axis: zeroshot.AxisFeatures(
                pred["pose_feats"][a], pred["text_feats"][a], [p[a] for p in pred["prompts"]],
                float(pred["logit_scales"][a]),
            )
            for a, axis in enumerate("xyz")
        }
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
        figure = plots.zeroshot_figure(
            dataset.images[cfg.figure_index], probs, pred["prompts"][:n_fig], cfg.figure_index,
            PLOTS / "zeroshot_demo.png",
        )
        curve = plots.zeroshot_curve(rows, PLOTS / "zeroshot_accuracy.png")
        _log_final(flat)
        mlflow_log_artifacts(figure, curve)
    return table


def evaluate(params: Params, raw: dict) -> dict:
    """FreiHAND's protocol on the evaluation split, beside the mean-pose baseline."""
    model = load_model(MODELS / "model.pt")
    device = resolve_device(params.finetune.device)
    model.to(device)
    dataset = _eval_set(params)
    if not dataset.has_targets:
        raise RuntimeError(f"{PROCESSED}/eval.npz has no xyz/verts: fetch the evaluation annotations first")
    example = params.evaluate.figure_index
    if example >= len(dataset):
        raise ConfigError(f"evaluate.figure_index: {example} is past the {len(dataset)} evaluation images")
    with tracking.stage_run("evaluate", _sections(raw, "evaluate")):
        pred = predict_dataset(model, dataset, params.evaluate.batch_size, device, with_text=False, desc="evaluate")
        gt_xyz, gt_verts = dataset.ann["xyz"], dataset.ann["verts"].astype(np.float64)
        ours = metrics.freihand_summary(gt_xyz, gt_verts, pred["joints_cam"], pred["verts_cam"])
        base = _mean_pose_baseline(gt_xyz, gt_verts)
        keys = ("mpjpe_mm", "pa_mpjpe_mm", "pa_mpvpe_mm", "auc_j_aligned", "auc_v_aligned", "f5_aligned", "f15_aligned")
        result = {
            "model": {k: float(ours[k]) for k in keys},
            "mean_pose_baseline": {k: float(base[k]) for k in keys},
            "error_sources": _error_sources(pred["joints25d"], dataset, params.model.depth_range),
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
        figure = plots.pck_figure(pck, PLOTS / "pck.png")
        # The README's picture, drawn as `cliphand predict` draws, beside the truth through the same code.
        rows = [
            viz.prediction_panels(dataset.images[example], dataset.ann["K"][example], joints, verts,
                                  model.hierarchy.faces, title=who)
            for who, joints, verts in (("prediction", pred["joints_cam"][example], pred["verts_cam"][example]),
                                       ("truth", gt_xyz[example], gt_verts[example]))
        ]
        picture = viz.save_png(viz.stack_rows(rows), DOCS / "prediction.png")
        _log_final({f"{who}_{k}": v for who, r in result.items() for k, v in r.items()})
        mlflow_log_artifacts(figure, picture)
    return result


def _error_sources(pred25d: np.ndarray, dataset: HandDataset, depth_range: float) -> dict[str, float]:
    """PA-MPJPE with one part of the 2.5D prediction replaced by the truth: which part costs most.

    ``uv_only``: predicted u, v with true relative depth; ``depth_only``: true u, v with predicted
    depth; both with the true root depth, so absolute depth recovery plays no part.
    """
    from cliphand import geometry

    gt25d = dataset.ann["joints25d"].astype(np.float64)
    K = torch.from_numpy(dataset.ann["K"]).double()
    scale = torch.from_numpy(dataset.ann["scale"]).double()
    root = torch.from_numpy(dataset.ann["xyz"][:, 0, 2]).double()
    out = {}
    for name, uv, depth in (("uv_only", pred25d, gt25d), ("depth_only", gt25d, pred25d)):
        mixed = torch.from_numpy(np.concatenate([uv[..., :2], depth[..., 2:]], axis=-1)).double()
        cam = geometry.from_25d(mixed, root, K, scale, dataset.size, depth_range).numpy()
        out[f"pa_mpjpe_mm_{name}"] = float(metrics.freihand_summary(dataset.ann["xyz"], None, cam, None)["pa_mpjpe_mm"])
    return out


def _mean_pose_baseline(gt_xyz: np.ndarray, gt_verts: np.ndarray) -> dict[str, Any]:
    """The training set's mean root-relative hand, placed at each ground-truth root."""
    train = np.load(PROCESSED / "train.npz")
    mean_j = (train["xyz"] - train["xyz"][:, :1]).mean(0)
    mean_v = (train["verts"] - train["xyz"][:, :1]).mean(0)
    roots = gt_xyz[:, :1]
    return metrics.freihand_summary(gt_xyz, gt_verts, roots + mean_j, roots + mean_v)


def _log_final(values: dict) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})


def mlflow_log_artifacts(*paths: Path) -> None:
    """Log files as artifacts of the active run."""
    import mlflow

    for p in paths:
        mlflow.log_artifact(str(p))
