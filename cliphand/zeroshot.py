"""Zero-shot image→prompt retrieval over a whole split, from precomputed pose and text features.

The authors' demo prints, for one evaluation image, the softmax probability of its own prompt
among the N prompts of its batch: one number for one image, not an accuracy. Here the split is cut
into consecutive batches of N (the last, incomplete batch is dropped), and for every image the
softmax over its batch's N prompts gives:

* top-1 / top-5: whether the best / any of the five best prompts is right. A prompt is right when
  its text equals the image's own prompt, so identical prompts of other images count as right.
* mean_prob: the probability mass on the right prompts (all columns with the image's text).
* chance: (#columns with the image's text) / N, the top-1 accuracy of a random guess (1/N without
  duplicates).

All four are averaged over the images of the kept batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_BATCH_SIZES = (16, 32, 64, 128, 256)
TOP_K = 5
_NORM_TOL = 1e-2


@dataclass(frozen=True)
class AxisFeatures:
    """Features of one axis (x, y or z) for a whole split, in split order."""

    pose_feats: torch.Tensor | np.ndarray  # [M, D], L2-normalised
    text_feats: torch.Tensor | np.ndarray  # [M, D], L2-normalised; row i encodes prompts[i]
    prompts: Sequence[str]  # [M]
    logit_scale: float  # the learned scale, already exponentiated


def _as_features(name: str, x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    shape = tuple(t.shape)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape [M, D] with M > 0, got {shape}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains non-finite values (shape {shape})")
    if not torch.allclose(t.norm(dim=1), torch.ones(len(t), dtype=t.dtype), atol=_NORM_TOL):
        raise ValueError(f"{name} rows must be L2-normalised (shape {shape})")
    return t


def _checked_batches(
    pose_feats: torch.Tensor | np.ndarray,
    text_feats: torch.Tensor | np.ndarray,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The kept batches: pose [nb, N, D], text [nb, N, D], and their number nb."""
    pose = _as_features("pose_feats", pose_feats)
    text = _as_features("text_feats", text_feats)
    if pose.shape != text.shape:
        raise ValueError(
            f"pose_feats {tuple(pose.shape)} and text_feats {tuple(text.shape)} must match"
        )
    if batch_size < 1 or batch_size > len(pose):
        raise ValueError(
            f"batch_size must be in [1, {len(pose)}] (the split's size), got {batch_size}"
        )
    nb = len(pose) // batch_size
    kept = nb * batch_size  # the last, incomplete batch is dropped
    return (
        pose[:kept].reshape(nb, batch_size, -1),
        text[:kept].reshape(nb, batch_size, -1),
        nb,
    )


def batch_probabilities(
    pose_feats: torch.Tensor | np.ndarray,
    text_feats: torch.Tensor | np.ndarray,
    logit_scale: float,
    batch_size: int,
    batch_index: int = 0,
) -> np.ndarray:
    """Softmax probabilities [N, N] of one batch: row i is image i's distribution over prompts.

    Batch `batch_index` holds split rows ``[batch_index * N, (batch_index + 1) * N)``; the demo's
    number for image i of that batch is ``probs[i, i]``.
    """
    pose, text, nb = _checked_batches(pose_feats, text_feats, batch_size)
    if not 0 <= batch_index < nb:
        raise ValueError(
            f"batch_index must be in [0, {nb}) for batch_size {batch_size}, got {batch_index}"
        )
    logits = logit_scale * pose[batch_index] @ text[batch_index].T  # [N, N]
    return logits.softmax(dim=1).numpy()


def retrieval_metrics(
    pose_feats: torch.Tensor | np.ndarray,
    text_feats: torch.Tensor | np.ndarray,
    prompts: Sequence[str],
    logit_scale: float,
    batch_size: int,
) -> dict[str, float | int]:
    """Image→prompt retrieval in consecutive batches of `batch_size` (last incomplete one dropped).

    Returns ``{"top1", "top5", "mean_prob", "chance", "batches", "dropped"}``: the first four
    averaged over the images of the kept batches, then the number of batches and of dropped images.
    top-5 is top-N when N < 5.
    """
    pose, text, nb = _checked_batches(pose_feats, text_feats, batch_size)
    if len(prompts) != len(pose_feats):
        raise ValueError(
            f"prompts has {len(prompts)} entries, expected {len(pose_feats)} (one per row)"
        )
    kept = nb * batch_size
    _, ids = np.unique(np.asarray(list(prompts[:kept]), dtype=str), return_inverse=True)
    ids = torch.as_tensor(ids).view(nb, batch_size)  # [nb, N]
    right = ids[:, :, None] == ids[:, None, :]  # [nb, N, N]: column j has image i's text

    probs = (logit_scale * pose @ text.transpose(1, 2)).softmax(dim=2)  # [nb, N, N]
    top = probs.topk(min(TOP_K, batch_size), dim=2).indices  # [nb, N, k]
    hits = right.gather(2, top)  # [nb, N, k]
    return {
        "top1": hits[..., 0].double().mean().item(),
        "top5": hits.any(dim=2).double().mean().item(),
        "mean_prob": (probs * right).sum(dim=2).mean().item(),
        "chance": right.double().mean().item(),
        "batches": nb,
        "dropped": len(pose_feats) - kept,
    }


def zeroshot_table(
    features: Mapping[str, AxisFeatures],
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
) -> dict[str, dict[int, dict[str, float | int]]]:
    """`retrieval_metrics` for every axis and batch size: ``{axis: {N: {top1, top5, ...}}}``.

    Raises ValueError when a batch size exceeds the split.
    """
    return {
        axis: {
            n: retrieval_metrics(f.pose_feats, f.text_feats, f.prompts, f.logit_scale, n)
            for n in batch_sizes
        }
        for axis, f in features.items()
    }


def split_features(outputs: Mapping) -> dict[str, AxisFeatures]:
    """Per-axis features of a split from ``cliphand.outputs.dataset_outputs`` (with text)."""
    return {
        axis: AxisFeatures(
            outputs["pose_feats"][a], outputs["text_feats"][a], [p[a] for p in outputs["prompts"]],
            float(outputs["logit_scales"][a]),
        )
        for a, axis in enumerate("xyz")
    }
