"""One hand per photo: crop, run the model, write the joints (JSON), the mesh (PLY) and a figure (PNG).

A photo of any size is cropped to a square (a given box, or the centre square) and resized to the
model's input, with the photo's intrinsics carried into the crop (:mod:`cliphand.crop`). The
model's 2.5D joints and vertices are lifted to camera space with those intrinsics and the hand's
scale, which a single photo does not reveal: ``DEFAULT_HAND_SCALE_M`` is assumed, so absolute depth
is approximate, all the more with default intrinsics; 2D joints and the root-relative shape are not
affected by either.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from cliphand import viz
from cliphand.camera import project
from cliphand.codec import Codec25D
from cliphand.crop import (
    Box,
    check_intrinsics,
    crop_box,
    crop_image,
    crop_matrix,
    default_intrinsics,
)
from cliphand.files import write_json
from cliphand.images import InputError, read_image
from cliphand.meshio import write_ply
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.export import InferenceModel
from cliphand.models.prior import PosePrior
from cliphand.skeleton import JOINT_NAMES, NUM_JOINTS

# The middle finger's MCP-PIP length (FreiHAND's ``scale``): the synthetic set's mean, about an
# adult's proximal phalanx.
DEFAULT_HAND_SCALE_M = 0.044


@dataclass
class Predictor:
    """A model as ``cliphand predict`` runs it: the image → 2.5D network of ``InferenceModel`` and
    what lifting its output to camera space needs, so a model file and a registered model (whose
    network MLflow stores as an exported graph) are run by the same code."""

    net: Callable[[torch.Tensor], torch.Tensor]  # [B, 3, S, S] in [0, 1] → [B, 21 + V, 3] 2.5D
    image_size: int
    depth_range: float
    bone_ratios: np.ndarray  # [20], the model's (CLIPHand3D.bone_ratios)
    root_prior: np.ndarray  # [2], the model's (CLIPHand3D.root_prior)
    faces: np.ndarray | None  # [F, 3] when the topology is known
    prior: PosePrior | None = None  # the model's (CLIPHand3D.prior), applied after lifting

    @classmethod
    def from_model(cls, model: CLIPHand3D) -> Predictor:
        """Wrap a full model (its text side is dropped)."""
        h = model.hierarchy
        # Both fitted to the model's own skeletons by the finetune stage.
        ratios, root_prior = model.bone_ratios.cpu().numpy(), model.root_prior.cpu().numpy()
        return cls(InferenceModel(model), model.cfg.image_size, model.cfg.depth_range, ratios, root_prior, h.faces,
                   model.prior)

    def metadata(self) -> dict[str, Any]:
        """What the registered model stores beside its network (``serving.log_model``)."""
        return {"cliphand": {
            "image_size": self.image_size, "depth_range": self.depth_range,
            "bone_ratios": np.asarray(self.bone_ratios).tolist(), "root_prior": np.asarray(self.root_prior).tolist(),
            "faces": None if self.faces is None else np.asarray(self.faces).tolist(),
        }}

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, K: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera-space joints ``[B, 21, 3]`` and vertices ``[B, V, 3]`` (meters) for images
        ``[B, 3, S, S]`` with their crops' ``K`` ``[B, 3, 3]`` and the hands' ``scale`` ``[B]``,
        lifted by the codec and passed through the pose prior as ``CLIPHand3D.forward`` does (in float64)."""
        out = self.net(images).double()
        ratios = torch.as_tensor(self.bone_ratios, dtype=torch.float64)
        codec = Codec25D(self.image_size, self.depth_range)
        joints, verts = codec.lift(out[:, :NUM_JOINTS], K.double(), scale.double(), ratios, out[:, NUM_JOINTS:],
                                   root_prior=torch.as_tensor(self.root_prior, dtype=torch.float64))
        return self.prior(joints, verts) if self.prior is not None else (joints, verts)


def load_model_file(path: Path | str) -> CLIPHand3D:
    """A full model (text side included) from a file written by ``save_model``; a file of another
    format (the old pickled one included) is a one-line error naming it, never loaded."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file (train one with `dvc repro`, or give a registry URI "
                         "such as models:/cliphand3d@champion)")
    from cliphand.models.io import load_model

    return load_model(path).eval()


@dataclass
class HandPrediction:
    """The model's hand in one photo, in camera space (meters) and in the photo's pixels."""

    box: Box  # the square crop, photo pixels
    K: np.ndarray  # [3, 3] intrinsics of the photo
    K_given: bool  # False: default_intrinsics, depth approximate
    crop: np.ndarray  # [S, S, 3] uint8, what the model saw
    K_crop: np.ndarray  # [3, 3] intrinsics of the crop
    joints: np.ndarray  # [21, 3]
    verts: np.ndarray  # [778, 3]
    hand_scale: float  # meters, assumed

    @property
    def joints_uv(self) -> np.ndarray:
        """The joints in photo pixels ``[21, 2]``."""
        return project(self.joints, self.K)

    def to_json(self) -> dict[str, Any]:
        """Everything a consumer needs, as plain JSON (lengths in meters, 2D in photo pixels)."""
        depth = "from the given intrinsics" if self.K_given else "approximate: default FreiHAND-like intrinsics"
        return {
            "crop": {"x": self.box.x, "y": self.box.y, "side": self.box.side},
            "camera": {
                "K": self.K.round(4).tolist(),
                "intrinsics": "given" if self.K_given else "default",
                "hand_scale_m": self.hand_scale,
                "depth": f"{depth}, and an assumed hand scale (middle MCP-PIP) of {self.hand_scale} m",
            },
            "joint_names": list(JOINT_NAMES),
            "joints_3d_m": self.joints.round(6).tolist(),
            "joints_2d_px": self.joints_uv.round(2).tolist(),
            "vertices_m": self.verts.round(6).tolist(),
        }


def predict_hand(predictor: Predictor, photo: Image.Image, bbox: tuple[float, float, float, float] | None = None,
                 K: np.ndarray | None = None, hand_scale: float = DEFAULT_HAND_SCALE_M) -> HandPrediction:
    """Crop ``photo`` around ``bbox`` (x, y, w, h; the centre square when None) and run ``predictor``.

    ``K`` [3, 3]: the photo's intrinsics in pixels; None assumes ``default_intrinsics`` of the crop.
    """
    size = predictor.image_size
    box = crop_box(photo.width, photo.height, bbox)
    K_photo = default_intrinsics(box) if K is None else check_intrinsics(K)
    K_crop = crop_matrix(box, size) @ K_photo
    crop = crop_image(photo, box, size)
    image = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255.0)  # [1, 3, S, S], as HandDataset
    joints, verts = predictor(image, torch.from_numpy(K_crop)[None], torch.tensor([hand_scale]))
    return HandPrediction(box=box, K=K_photo, K_given=K is not None, crop=crop, K_crop=K_crop,
                          joints=joints[0].numpy(), verts=verts[0].numpy(), hand_scale=hand_scale)


def write_prediction(pred: HandPrediction, faces: np.ndarray | None, out_dir: Path, stem: str,
                     meta: dict[str, Any]) -> dict[str, Path]:
    """``<stem>.json`` (``meta`` plus ``pred.to_json()``), ``<stem>.ply`` and ``<stem>.png`` in ``out_dir``."""
    paths = {"json": out_dir / f"{stem}.json", "mesh": out_dir / f"{stem}.ply", "figure": out_dir / f"{stem}.png"}
    write_ply(paths["mesh"], pred.verts, faces)
    viz.save_png(viz.prediction_panels(pred.crop, pred.K_crop, pred.joints, pred.verts, faces), paths["figure"])
    write_json(paths["json"], {**meta, **pred.to_json(), "mesh": paths["mesh"].name, "figure": paths["figure"].name})
    return paths


def predict_files(predictor: Predictor, files: Sequence[Path], out_dir: Path, model_source: str,
                  bbox: tuple[float, float, float, float] | None = None,
                  K: np.ndarray | None = None) -> list[dict[str, Path]]:
    """``predict_hand`` and ``write_prediction`` for every file, with a progress bar."""
    stems = [f.stem for f in files]
    clash = next((s for s in stems if stems.count(s) > 1), None)
    if clash is not None:
        raise InputError(f"two images are named {clash!r}: their outputs would overwrite each other")
    written = []
    for path in tqdm(files, desc="predict", unit="img", disable=len(files) < 2):
        photo = read_image(path)
        pred = predict_hand(predictor, photo, bbox, K)
        meta = {"image": str(path), "image_size": [photo.width, photo.height], "model": model_source}
        written.append(write_prediction(pred, predictor.faces, out_dir, path.stem, meta))
    return written
