"""The Model Registry holds the safe format: a registered cliphand model is rebuilt from its
safetensors artifact and nothing of the entry is unpickled; any other entry is refused in one line;
the default pipeline moves the alias ``champion``, a `dvc exp run` experiment never does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image
from test_safety_model_files import Trap

from cliphand.checkpoint import CheckpointError
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.io import save_model
from cliphand.predict import InputError, Predictor, predict_hand
from cliphand.serving import CHAMPION, CliphandModel, load_predictor, log_model
from cliphand.tracking import REGISTERED_MODEL

pytestmark = pytest.mark.slow
# What the old check looked for: a registry entry with it passed as a cliphand model.
OLD_METADATA = {"cliphand": {"image_size": 64, "depth_range": 8.0, "bone_ratios": [1.0] * 20, "faces": None}}


class TrapModule(torch.nn.Module):
    """A pytorch-flavour model whose pickle creates ``marker`` when loaded."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def __reduce_ex__(self, protocol):
        return Trap(self.marker).__reduce__()


class TrapPythonModel(CliphandModel):
    """A pyfunc whose ``python_model.pkl`` creates ``marker`` when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return Trap(self.marker).__reduce__()


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty SQLite store as the tracking URI (restored afterwards), outside any `dvc exp run`."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    mlflow.set_tracking_uri(uri)
    return uri


def _model(seed: int, hierarchy) -> CLIPHand3D:
    torch.manual_seed(seed)
    return CLIPHand3D(tiny_config(), hierarchy).eval()


def _joints(predictor: Predictor) -> np.ndarray:
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    return predict_hand(predictor, photo).joints


def test_a_pickled_pytorch_model_in_the_registry_is_refused_unloaded(store, tmp_path, monkeypatch):
    """Whatever MLflow's own guard says: here a user has allowed MLflow to unpickle (for other models)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    marker = tmp_path / "pwned"
    with mlflow.start_run():
        mlflow.pytorch.log_model(TrapModule(str(marker)), name="model", registered_model_name=REGISTERED_MODEL,
                                 metadata=OLD_METADATA, pip_requirements=["torch"], serialization_format="pickle")
    assert not marker.exists()
    with pytest.raises(InputError, match=r"^models:/cliphand3d/1: not a cliphand model in the safe format "
                                         r"\(flavours: python_function, pytorch\); refused without loading it"):
        load_predictor("models:/cliphand3d/1", store)
    assert not marker.exists()


def test_a_forged_entry_is_rebuilt_from_its_model_file_alone(store, tmp_path, hierarchy):
    """Our metadata over hostile pickles: python_model.pkl is never read, a pickled artifact is refused."""
    import mlflow

    marker, good, bad = tmp_path / "pwned", tmp_path / "model.safetensors", tmp_path / "model.pt"
    model = _model(0, hierarchy)
    save_model(model, good)
    torch.save({"model": Trap(str(marker))}, bad)
    ours = {"cliphand": {**OLD_METADATA["cliphand"], "format": "cliphand-model", "version": 1}}
    for artifact in (good, bad):
        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=TrapPythonModel(str(marker)),
                                    artifacts={"model": str(artifact)}, registered_model_name=REGISTERED_MODEL,
                                    metadata=ours, pip_requirements=["torch"])
    np.testing.assert_array_equal(_joints(load_predictor("models:/cliphand3d/1", store)),
                                  _joints(Predictor.from_model(model)))
    with pytest.raises(CheckpointError, match=r"model\.pt: a pickled model file \(the old format"):
        load_predictor("models:/cliphand3d/2", store)
    assert not marker.exists()


def test_only_the_default_pipeline_moves_the_champion_alias(store, hierarchy, monkeypatch):
    from mlflow import MlflowClient

    data = [{"image": torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(i))} for i in range(2)]
    first, second = _model(0, hierarchy), _model(1, hierarchy)
    log_model(first, data)  # `dvc repro`
    monkeypatch.setenv("DVC_EXP_NAME", "direct-778")  # an ablation, or any `dvc exp run`
    log_model(second, data)
    assert MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version == 1
    champion = _joints(load_predictor(f"models:/{REGISTERED_MODEL}@{CHAMPION}", store))
    np.testing.assert_allclose(champion, _joints(Predictor.from_model(first)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_joints(load_predictor(f"models:/{REGISTERED_MODEL}/2", store)),
                               _joints(Predictor.from_model(second)), rtol=1e-5, atol=1e-6)
