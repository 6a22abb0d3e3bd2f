"""The work of the two training stages, ``pretrain`` and ``finetune`` (their modules only name the phase)."""

from __future__ import annotations

import json
from collections.abc import Callable

from cliphand import tracking
from cliphand.checkpoint import load_checkpoint, load_model_state
from cliphand.config import Params, TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.files import write_csv, write_json
from cliphand.models.cliphand3d import CLIPHand3D, count_parameters
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.models.io import load_weights, save_model
from cliphand.paths import CHECKPOINTS, METRICS, MODEL_FILES, PLOTS, PROCESSED
from cliphand.stages import sections
from cliphand.training import distributed
from cliphand.training.trainer import seed_everything, train_phase


def datasets(params: Params, phase: str) -> tuple[HandDataset, HandDataset]:
    """The training split (with the phase's augmentation) and the validation split, with the model's
    2.5D targets and prompts."""
    cfg = getattr(params, phase)
    args = (params.model.depth_range, params.prompts.template)
    return (HandDataset(PROCESSED, "train", *args, augment=cfg.augment, seed=cfg.seed),
            HandDataset(PROCESSED, "val", *args))


def train(
    params: Params, raw: dict, phase: str,
    register: Callable[[CLIPHand3D, HandDataset], object] | None = None,
    calibrate: Callable[[CLIPHand3D, HandDataset, TrainConfig], dict[str, float]] | None = None,
) -> dict:
    """Contrastive pretraining or fine-tuning; resumes from ``checkpoints/<phase>.pt`` after a kill.

    With ``launch.nproc`` above 1 and no launcher around, the stage runs itself again under
    torchrun and returns the metrics its rank 0 wrote; under torchrun every process trains and
    rank 0 alone logs to MLflow and writes the model, metrics, the epochs' and the step trace's CSVs
    (the evaluate stage draws them, so a change to the figure does not retrain) and checkpoints; ``calibrate``
    (finetune's) adjusts the trained model on the validation split before it is saved and returns
    metrics, and ``register`` (finetune's) then logs the model to the MLflow registry.
    """
    cfg = getattr(params, phase)
    if params.launch.nproc > 1 and not distributed.launched():
        distributed.relaunch(params.launch.nproc, f"cliphand.stages.{phase}")
        return json.loads((METRICS / f"{phase}.json").read_text())
    with distributed.process_group(cfg.device) as world:
        hierarchy = MeshHierarchy.load(PROCESSED / "hierarchy.npz")
        seed_everything(cfg.seed)  # the initial weights too: a seeded run reproduces its metrics
        model = CLIPHand3D(params.model, hierarchy)
        if phase == "finetune":
            source = MODEL_FILES["pretrain"]
            load_model_state(model, load_weights(source), source)
        train_set, val_set = datasets(params, phase)
        checkpoint = CHECKPOINTS / f"{phase}.pt"
        run_id = load_checkpoint(checkpoint).get("run", {}).get("mlflow_run_id") if checkpoint.is_file() else None
        if not world.is_main:
            return train_phase(model, cfg, phase, train_set, val_set, checkpoint).final
        logged = sections(raw, "model", "prompts", "launch", phase)
        with tracking.stage_run(phase, logged, run_id=run_id) as run:
            import mlflow

            if run_id is None:
                mlflow.log_params({f"n_params.{k}": v for k, v in count_parameters(model).items()})
            # Epoch records at the epoch's number, the step trace at the optimiser step: (metrics, step).
            result = train_phase(
                model, cfg, phase, train_set, val_set, checkpoint,
                on_metrics=mlflow.log_metrics, on_trace=mlflow.log_metrics,
                run_info={"mlflow_run_id": run.info.run_id},
            )
            model.cpu()
            if calibrate is not None:
                calibration = calibrate(model, val_set, cfg)
                mlflow.log_metrics(calibration)
                result.final.update(calibration)
            save_model(model, MODEL_FILES[phase])
            write_json(METRICS / f"{phase}.json", result.final)
            write_csv(PLOTS / f"{phase}.csv", result.history)
            write_csv(PLOTS / f"{phase}_steps.csv", result.trace)
            if register is not None:
                register(model, val_set)
        checkpoint.unlink(missing_ok=True)
    return result.final

