"""Models in the MLflow Model Registry: logging the pipeline's model, and loading a model by file or
registry URI for ``cliphand predict``.

A registered model is an MLflow pyfunc (``CliphandModel``) whose one artifact is the safetensors
model file (``cliphand.models.io``). Loading one never unpickles anything: ``load_predictor``
downloads the model's folder, reads its ``MLmodel`` as YAML data, checks the ``cliphand`` format
in its metadata and rebuilds the model from the artifact with ``load_model``; any other entry (a
pickled pytorch-flavour model, say) is refused unread. ``mlflow.pyfunc.load_model`` (MLflow's
own serving) does unpickle the ``CliphandModel`` object, as it does any pyfunc: that is a choice
of whoever serves it, never made by cliphand.

The default pipeline's finetune points the alias ``champion`` at the version it registers, so
``models:/cliphand3d@champion`` is the model ``dvc repro`` made last; ``dvc exp run`` experiments
and ablations register their versions but leave the alias alone.

This module sits above both ``cliphand.predict`` (running a model on photos) and
``cliphand.tracking`` (MLflow runs); neither imports it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import torch
import yaml

import cliphand
from cliphand.checkpoint import first_line
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.export import InferenceModel
from cliphand.models.io import FORMAT, VERSION, load_model, save_model
from cliphand.predict import InputError, Predictor, load_model_file
from cliphand.tracking import REGISTERED_MODEL, check_server, experiment_name

REGISTRY_SCHEMES = ("models:/", "runs:/")
CHAMPION = "champion"  # the alias of the default pipeline's latest model
ARTIFACT = "model"  # the pyfunc's artifact key of the model file


class CliphandModel(mlflow.pyfunc.PythonModel):
    """The pyfunc MLflow serves: images ``[B, 3, S, S]`` in [0, 1] → ``[B, 21 + 778, 3]`` 2.5D joints
    then vertices (``InferenceModel``), built from the safetensors file in its artifacts."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.net = InferenceModel(load_model(context.artifacts[ARTIFACT]))

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: np.ndarray,
                params: dict[str, Any] | None = None) -> np.ndarray:
        with torch.inference_mode():
            return self.net(torch.as_tensor(np.asarray(model_input, dtype=np.float32))).numpy()


def log_model(model: CLIPHand3D, dataset: Any, registered_name: str = REGISTERED_MODEL) -> Any:
    """Log ``model`` as a ``CliphandModel`` pyfunc with an input example and signature, register it,
    and outside ``dvc exp run`` point the alias ``champion`` at the new version."""
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    example = torch.stack([dataset[i]["image"] for i in range(min(2, len(dataset)))]).numpy()
    with torch.inference_mode():
        output = InferenceModel(model)(torch.from_numpy(example)).numpy()
    # What lifting the output to camera space needs, and the format load_predictor checks.
    lifting = Predictor.from_model(model).metadata()["cliphand"]
    metadata = {"cliphand": {**lifting, "format": FORMAT, "version": VERSION}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_model(model, path)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=CliphandModel(),
            artifacts={ARTIFACT: str(path)},
            input_example=example,
            signature=infer_signature(example, output),
            registered_model_name=registered_name,
            metadata=metadata,
            # Stated, not inferred: MLflow's inference loads the model again in a subprocess
            # (about 8 s of every finetune stage on a 2-core CPU) and found only this package anyway,
            # whose own requirements pin torch, timm and open_clip.
            pip_requirements=[f"cliphand=={cliphand.__version__}"],
        )
    if experiment_name() is None:
        MlflowClient().set_registered_model_alias(registered_name, CHAMPION, str(info.registered_model_version))
    return info


def load_predictor(source: str, tracking_uri: str) -> Predictor:
    """A model file, or a registered model (``models:/cliphand3d@champion``, ``models:/cliphand3d/3``,
    ``runs:/<id>/model``) from the MLflow store at ``tracking_uri``, ready to run on the CPU."""
    if source.startswith(REGISTRY_SCHEMES):
        return _from_registry(source, tracking_uri)
    return Predictor.from_model(load_model_file(source))


def _from_registry(uri: str, tracking_uri: str) -> Predictor:
    from mlflow.exceptions import MlflowException

    check_server(tracking_uri)
    # A missing SQLite store would be created, empty, by the lookup: say where it was looked for.
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).is_file():
        raise InputError(f"{uri}: no MLflow store at {tracking_uri} (run `dvc repro`, or set --tracking-uri)")
    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except MlflowException as e:
            raise InputError(f"{uri}: not found at {tracking_uri} ({first_line(e)})") from None
        return Predictor.from_model(load_model(_model_file(uri, folder)).eval())


def _model_file(uri: str, folder: Path) -> Path:
    """The model file of a downloaded registered model, checked from its ``MLmodel`` (read as data)."""
    try:
        spec = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        raise InputError(f"{uri}: not an MLflow model (no readable MLmodel file)") from None
    flavors = _get(spec, "flavors") if isinstance(_get(spec, "flavors"), dict) else {}
    ours = _get(spec, "metadata", "cliphand")
    artifact = _get(flavors, "python_function", "artifacts", ARTIFACT, "path")
    if not isinstance(ours, dict) or (ours.get("format"), ours.get("version")) != (FORMAT, VERSION) \
            or not isinstance(artifact, str):
        kinds = ", ".join(map(str, flavors)) or "none"
        raise InputError(f"{uri}: not a cliphand model in the safe format (flavours: {kinds}); refused without "
                         "loading it (register it again with the current pipeline)")
    path = (folder / artifact).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise InputError(f"{uri}: its model file {artifact!r} lies outside the model's folder; refused")
    return path


def _get(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]...``, or None where a level is missing or not a mapping (MLmodel is untrusted)."""
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree
