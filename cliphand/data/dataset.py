"""The training/evaluation dataset over preprocessed arrays (see ``cliphand.data.preprocess``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cliphand.codec import Codec25D
from cliphand.config import AugmentConfig
from cliphand.data import augment
from cliphand.text.prompts import make_prompts


class HandDataset(Dataset):
    """Samples of one processed split: image in [0, 1], ``K``, ``scale``, targets and prompts.

    Targets: ``xyz`` [21, 3] and ``verts`` [778, 3] in meters, and their 2.5D forms
    ``joints25d``/``verts25d`` (``cliphand.codec``); ``prompts``: the x, y, z sentences.
    Images are memory-mapped, so workers share the page cache instead of copies.
    """

    def __init__(
        self, root: Path, split: str, depth_range: float, template: str | None = None,
        augment: AugmentConfig | None = None, seed: int = 0,
    ) -> None:
        root = Path(root)
        ann_path, img_path = root / f"{split}.npz", root / f"{split}_images.npy"
        for path in (ann_path, img_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; run the preprocess stage first")
        with np.load(ann_path) as z:
            self.ann = {k: z[k] for k in z.files}
        self.images = np.load(img_path, mmap_mode="r")
        if len(self.images) != len(self.ann["K"]):
            raise ValueError(f"{img_path}: {len(self.images)} images but {len(self.ann['K'])} annotations in {ann_path}")
        self.size = self.images.shape[1]
        self.depth_range = depth_range
        self.codec = Codec25D(self.size, depth_range)
        self.has_targets = "xyz" in self.ann and "verts" in self.ann
        self.template = template
        # Augmented samples are drawn per (seed, epoch, index): the sampler hands (epoch, index) keys.
        self.augment = augment if augment is not None and augment.enabled and self.has_targets else None
        self.seed = seed
        if self.has_targets:
            kwargs = {} if template is None else {"template": template}
            self.prompts = make_prompts(self.ann["xyz"], **kwargs)
            self._targets25d()

    def _targets25d(self) -> None:
        K = torch.from_numpy(self.ann["K"])
        scale = torch.from_numpy(self.ann["scale"]).double()
        xyz = torch.from_numpy(self.ann["xyz"]).double()
        verts = torch.from_numpy(self.ann["verts"]).double()
        j25 = self.codec.encode(xyz, K, scale)
        v25 = self.codec.encode_points(verts, xyz[:, 0, 2], K, scale)
        self.ann["joints25d"], self.ann["verts25d"] = j25.float().numpy(), v25.float().numpy()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Sample ``key``: an index, or ``(epoch, index)`` from the training sampler (augmented, when on)."""
        epoch, i = key if isinstance(key, tuple) else (None, key)
        if self.augment is not None and epoch is not None:
            return self._augmented(i, np.random.default_rng([self.seed, epoch, i]))
        image = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).float() / 255.0  # copy out of the memmap
        item = {
            "image": image,  # [3, S, S]
            "K": torch.from_numpy(self.ann["K"][i]).float(),
            "scale": torch.tensor(float(self.ann["scale"][i])),
            "index": int(self.ann["index"][i]),
        }
        if self.has_targets:
            item.update(
                xyz=torch.from_numpy(self.ann["xyz"][i]).float(),
                verts=torch.from_numpy(self.ann["verts"][i]).float(),
                joints25d=torch.from_numpy(self.ann["joints25d"][i]),
                verts25d=torch.from_numpy(self.ann["verts25d"][i]),
                prompts=tuple(self.prompts[i]),
            )
        return item

    def _augmented(self, i: int, rng: np.random.Generator) -> dict:
        """Sample ``i`` warped by a draw from ``rng``, its targets and prompts recomputed to match."""
        K = self.ann["K"][i].astype(np.float64)
        w = augment.draw(self.augment, rng, K, self.size)
        image, K_new, (xyz, verts) = augment.apply(
            w, np.asarray(self.images[i]), K, [self.ann["xyz"][i].astype(np.float64), self.ann["verts"][i].astype(np.float64)]
        )
        Kt, scale = torch.from_numpy(K_new)[None], torch.tensor([float(self.ann["scale"][i])], dtype=torch.float64)
        xyz_t, verts_t = torch.from_numpy(xyz)[None], torch.from_numpy(verts)[None]
        kwargs = {} if self.template is None else {"template": self.template}
        return {
            "image": torch.from_numpy(image).permute(2, 0, 1).float() / 255.0,
            "K": torch.from_numpy(K_new).float(),
            "scale": torch.tensor(float(self.ann["scale"][i])),
            "index": int(self.ann["index"][i]),
            "xyz": torch.from_numpy(xyz).float(),
            "verts": torch.from_numpy(verts).float(),
            "joints25d": self.codec.encode(xyz_t, Kt, scale)[0].float(),
            "verts25d": self.codec.encode_points(verts_t, xyz_t[:, 0, 2], Kt, scale)[0].float(),
            "prompts": tuple(make_prompts(xyz, **kwargs)[0]),
        }
