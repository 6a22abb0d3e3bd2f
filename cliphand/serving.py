"""Models in the MLflow Model Registry: logging the pipeline's model, and loading a model by file or
registry URI for ``cliphand predict``.

This module sits above both ``cliphand.predict`` (running a model on photos) and
``cliphand.tracking`` (MLflow runs); neither imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.export import InferenceModel
from cliphand.predict import InputError, Predictor, load_model_file
from cliphand.tracking import REGISTERED_MODEL, check_server

REGISTRY_SCHEMES = ("models:/", "runs:/")


def log_model(model: CLIPHand3D, dataset: Any, registered_name: str = REGISTERED_MODEL) -> Any:
    """Log the inference model with an input example and signature, and register it."""
    import mlflow
    from mlflow.models import infer_signature

    wrapped = InferenceModel(model)
    example = torch.stack([dataset[i]["image"] for i in range(min(2, len(dataset)))]).numpy()
    with torch.inference_mode():
        output = wrapped(torch.from_numpy(example)).numpy()
    return mlflow.pytorch.log_model(
        wrapped,
        name="model",
        input_example=example,
        signature=infer_signature(example, output),
        registered_model_name=registered_name,
        metadata=Predictor.from_model(model).metadata(),  # what lifting the output to camera space needs
    )


def load_predictor(source: str, tracking_uri: str) -> Predictor:
    """A model file, or a registered model (``models:/cliphand3d/latest``, ``runs:/<id>/model``)
    from the MLflow store at ``tracking_uri``, ready to run on the CPU."""
    if source.startswith(REGISTRY_SCHEMES):
        return _from_registry(source, tracking_uri)
    return Predictor.from_model(load_model_file(source))


def _from_registry(uri: str, tracking_uri: str) -> Predictor:
    import mlflow
    from mlflow.exceptions import MlflowException

    check_server(tracking_uri)
    # A missing SQLite store would be created, empty, by the lookup: say where it was looked for.
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise InputError(f"{uri}: no MLflow store at {tracking_uri} (run `dvc repro`, or set --tracking-uri)")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        info = mlflow.models.get_model_info(uri).metadata or {}
        if "cliphand" not in info:
            raise InputError(f"{uri}: not a cliphand model (its MLflow metadata has no 'cliphand' entry)")
        net = mlflow.pytorch.load_model(uri, map_location="cpu")
    except MlflowException as e:
        raise InputError(f"{uri}: not found at {tracking_uri} ({e.message.splitlines()[0]})") from None
    meta = info["cliphand"]
    faces = None if meta["faces"] is None else np.asarray(meta["faces"], dtype=np.int64)
    return Predictor(net, int(meta["image_size"]), float(meta["depth_range"]), np.asarray(meta["bone_ratios"]), faces)
