"""Training-time augmentation: the image, the camera, the 3D targets and the prompts move together,
and a sample's draw depends only on (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import torch

from cliphand.camera import project
from cliphand.config import AugmentConfig
from cliphand.data.dataset import HandDataset
from cliphand.text.prompts import make_prompts

STRONG = AugmentConfig(rotate_deg=40.0, scale=0.2, translate=0.1)


def _colour_at(image: torch.Tensor, uv: np.ndarray) -> np.ndarray:
    """Colours ``[N, 3]`` of an image ``[3, S, S]`` at pixels ``uv`` ``[N, 2]`` (nearest, clipped)."""
    size = image.shape[-1]
    col, row = np.clip(np.round(uv).astype(int), 0, size - 1).T
    return image[:, row, col].T.numpy()


def test_the_warped_image_shows_the_hand_where_the_new_targets_say(processed_hands):
    plain = HandDataset(processed_hands, "train", 8.0)
    aug = HandDataset(processed_hands, "train", 8.0, augment=STRONG, seed=0)
    errors, controls = [], []
    for i in range(len(plain)):
        before, after = plain[i], aug[(1, i)]
        uv_before = project(before["xyz"].double().numpy(), before["K"].double().numpy())
        uv_after = project(after["xyz"].double().numpy(), after["K"].double().numpy())
        colours = _colour_at(before["image"], uv_before)
        errors.append(np.abs(_colour_at(after["image"], uv_after) - colours).mean())
        controls.append(np.abs(_colour_at(after["image"], uv_before) - colours).mean())  # ignoring the warp
    assert np.mean(errors) < 0.5 * np.mean(controls)


def test_targets_and_prompts_are_recomputed_from_the_turned_hand(processed_hands):
    aug = HandDataset(processed_hands, "train", 8.0, augment=STRONG, seed=0)
    item = aug[(3, 2)]
    K, scale = item["K"][None].double(), item["scale"][None].double()
    back = aug.codec.decode(item["joints25d"][None].double(), item["xyz"][None, 0, 2].double(), K, scale)
    torch.testing.assert_close(back[0].float(), item["xyz"], atol=1e-5, rtol=0)
    assert item["prompts"] == tuple(make_prompts(item["xyz"].numpy())[0])
    # Bones keep their lengths: the hand turned, it did not deform.
    plain = HandDataset(processed_hands, "train", 8.0)[2]
    assert torch.allclose((item["xyz"] - item["xyz"][0]).norm(dim=-1), (plain["xyz"] - plain["xyz"][0]).norm(dim=-1), atol=1e-5)


def test_a_draw_depends_only_on_seed_epoch_and_index(processed_hands):
    aug = HandDataset(processed_hands, "train", 8.0, augment=STRONG, seed=0)
    assert torch.equal(aug[(1, 4)]["image"], aug[(1, 4)]["image"])
    assert not torch.equal(aug[(1, 4)]["image"], aug[(2, 4)]["image"])
    other_seed = HandDataset(processed_hands, "train", 8.0, augment=STRONG, seed=1)
    assert not torch.equal(aug[(1, 4)]["image"], other_seed[(1, 4)]["image"])
    plain = HandDataset(processed_hands, "train", 8.0)
    assert torch.equal(aug[4]["image"], plain[4]["image"])  # an index alone (validation, evaluation): as stored
    off = HandDataset(processed_hands, "train", 8.0, augment=AugmentConfig(), seed=0)
    assert torch.equal(off[(1, 4)]["image"], plain[4]["image"])
