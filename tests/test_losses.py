"""Tests of the contrastive loss, its distributed gathering and the logit scale."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from cliphand.losses import (
    LogitScale,
    bone_loss,
    clip_loss,
    gather_features,
    heatmap2d_loss,
    heatmap_labels,
    heatmap_loss,
    prompt_ids,
)
from cliphand.skeleton import BONES

WORLD = 2


def _unit(rows: int, dim: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=g, dtype=torch.float64), dim=1)


def _standard_clip_loss(
    pose: torch.Tensor, text: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    logits = scale * pose @ text.T
    labels = torch.arange(len(logits))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def test_equals_standard_clip_loss_without_duplicates() -> None:
    pose, text = _unit(8, seed=1), _unit(8, seed=2)
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    expected = _standard_clip_loss(pose, text, scale)
    ids = prompt_ids([f"prompt {i}" for i in range(8)])
    assert torch.allclose(clip_loss(pose, text, scale, None), expected, rtol=0, atol=1e-12)
    assert torch.allclose(clip_loss(pose, text, scale, ids), expected, rtol=0, atol=1e-12)


def _descent_on_logits(ids: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """-dL/dlogits. With pose = I, logits = scale * text.T: text stands in for the similarities."""
    scale = torch.tensor(10.0, dtype=torch.float64)
    text = (logits.T / scale).clone().requires_grad_(True)
    pose = torch.eye(len(logits), dtype=torch.float64)
    clip_loss(pose, text, scale, ids).backward()
    return -text.grad.T * scale


def test_duplicates_are_not_pushed_apart() -> None:
    # Samples 0 and 1 share their prompt and match both texts equally well; 2 and 3 are distinct.
    ids = prompt_ids(["thumb first", "thumb first", "index first", "little first"])
    sims = torch.full((4, 4), -5.0, dtype=torch.float64)
    sims[:2, :2] = 8.0
    sims[2, 2] = sims[3, 3] = 8.0
    multi = _descent_on_logits(ids, sims)
    naive = _descent_on_logits(None, sims)
    # Descent never lowers the duplicate pair's similarity ...
    assert multi[0, 1] >= 0 and multi[1, 0] >= 0
    # ... whereas the naive loss pushes a sample away from its own text.
    assert naive[0, 1] < 0 and naive[1, 0] < 0
    assert multi[0, 0] >= 0 and naive[0, 0] > 0


def test_duplicates_reach_the_target_entropy() -> None:
    """Soft-target CE is bounded below by the targets' entropy; matching features attain it."""
    text = _unit(4, seed=3)
    text[1] = text[0]  # identical prompt → identical text feature
    ids = prompt_ids(["a", "a", "b", "c"])
    scale = torch.tensor(100.0, dtype=torch.float64)
    loss = clip_loss(text.clone(), text, scale, ids)
    # Rows 0 and 1 (of 4) have targets (1/2, 1/2), entropy log 2; the others are one-hot.
    assert loss.item() == pytest.approx(2 * math.log(2) / 4, abs=1e-6)
    assert _standard_clip_loss(text, text, scale).item() > 0.3  # the naive loss cannot get there


def test_loss_decreases_as_features_align() -> None:
    groups = torch.arange(16) % 12  # samples i and i + 12 share a prompt, hence a text feature
    text, noise = _unit(12, seed=4)[groups], _unit(16, seed=5)
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    ids = prompt_ids([str(g) for g in groups.tolist()])
    losses = [
        clip_loss(F.normalize(text + a * noise, dim=1), text, scale, ids).item()
        for a in (4.0, 2.0, 1.0, 0.5, 0.0)
    ]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses


def test_logit_scale_init_and_clamp() -> None:
    scale = LogitScale()
    assert scale().item() == pytest.approx(1 / 0.07)
    scale().backward()
    assert scale.log_scale.grad.item() == pytest.approx(1 / 0.07)
    with torch.no_grad():
        scale.log_scale.fill_(math.log(1000.0))
    assert scale().item() == pytest.approx(100.0)
    with torch.no_grad():
        scale.log_scale.fill_(math.log(0.1))
    assert scale().item() == pytest.approx(1.0)


def test_prompt_ids_are_equal_exactly_for_equal_texts() -> None:
    texts = ["index above thumb", "thumb above index", "index above thumb", ""]
    ids = prompt_ids(texts)
    assert ids.dtype == torch.long and ids.shape == (4,)
    assert ids[0] == ids[2] and len(set(ids.tolist())) == 3
    assert torch.equal(ids, prompt_ids(list(texts)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, pose: torch.Tensor, text: torch.Tensor, prompts: list[str],
                full_loss: torch.Tensor, full_pose_grad: torch.Tensor) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        half = len(pose) // WORLD
        local = slice(rank * half, (rank + 1) * half)

        x = pose[local].clone().requires_grad_(True)
        gathered = gather_features(x)
        assert torch.equal(gathered.detach(), pose)
        weights = torch.arange(pose.numel(), dtype=pose.dtype).view_as(pose)
        (gathered * weights).sum().backward()
        assert torch.equal(x.grad, WORLD * weights[local])  # its own slot only, times the world: DDP averages

        x = pose[local].clone().requires_grad_(True)
        scale = torch.tensor(1 / 0.07, dtype=pose.dtype)
        loss = clip_loss(x, text[local], scale, prompt_ids(prompts[local]))
        loss.backward()
        assert torch.allclose(loss, full_loss, rtol=0, atol=1e-12)
        # Every rank's loss is the full batch's; DDP's mean over ranks undoes the factor WORLD.
        assert torch.allclose(x.grad, WORLD * full_pose_grad[local], rtol=0, atol=1e-12)
    finally:
        dist.destroy_process_group()


def test_gathered_loss_over_two_ranks_equals_full_batch() -> None:
    pose, text = _unit(8, seed=6), _unit(8, seed=7)
    prompts = ["a", "b", "c", "d", "a", "e", "c", "f"]  # duplicates across the two ranks' halves
    full_pose = pose.clone().requires_grad_(True)
    scale = torch.tensor(1 / 0.07, dtype=pose.dtype)
    full_loss = clip_loss(full_pose, text, scale, prompt_ids(prompts))
    full_loss.backward()
    mp.spawn(
        _ddp_worker,
        args=(_free_port(), pose, text, prompts, full_loss.detach(), full_pose.grad),
        nprocs=WORLD,
        join=True,
    )


def test_gather_is_identity_without_distributed() -> None:
    x = torch.randn(3, 4)
    assert gather_features(x) is x


def test_bone_loss_sees_the_shape_not_the_place() -> None:
    """Moving the whole hand costs nothing; moving one fingertip costs its bone's error over 20 bones."""
    target = torch.rand(2, 21, 3)
    assert bone_loss(target + torch.tensor([0.1, -0.2, 0.05]), target).item() == pytest.approx(0.0, abs=1e-6)
    tip = BONES[-1][1]  # a fingertip: the child of the last bone, the parent of none
    moved = target.clone()
    moved[:, tip, 0] += 0.3
    assert bone_loss(moved, target).item() == pytest.approx(0.3 / (20 * 3), rel=1e-4)


def test_heatmap_labels_are_gaussians_around_each_coordinate() -> None:
    torch.manual_seed(0)
    joints = torch.rand(3, 21, 3)
    labels = heatmap_labels(joints, [12, 12, 24], 1.0)
    assert [tuple(l.shape) for l in labels] == [(3, 21, 12), (3, 21, 12), (3, 21, 24)]
    for axis, label in enumerate(labels):
        bins = label.shape[-1]
        torch.testing.assert_close(label.sum(-1), torch.ones(3, 21))
        assert (label.argmax(-1) == (joints[..., axis] * bins).long().clamp(max=bins - 1)).all()
    # the heatmap loss is the KL divergence from them: zero for heatmaps equal to the labels
    assert heatmap_loss([l.clamp_min(1e-30).log() for l in labels], labels) < 1e-5
    assert heatmap_loss([torch.zeros_like(l) for l in labels], labels) > 0.1


def test_the_2d_heatmap_loss_sees_what_the_marginals_cannot() -> None:
    """Zero for the labels' product; a 2D map with the same x and y marginals but mass moved off the
    joint (a zero-sum pattern across rows and columns) passes the 1D loss and not the 2D one."""
    torch.manual_seed(0)
    labels = heatmap_labels(torch.rand(2, 21, 3).clamp(0.2, 0.8), [12, 12, 24], 1.0)
    product = labels[1][..., :, None] * labels[0][..., None, :]  # [2, 21, 12, 12]
    assert heatmap2d_loss(product.log(), labels) < 1e-5
    # A zero-sum checkerboard on the labels' 3 x 3 neighbourhood: rows and columns keep their sums.
    ix, iy = labels[0].argmax(-1), labels[1].argmax(-1)  # [2, 21]
    moved = product.clone()
    for b in range(2):
        for j in range(21):
            y, x = iy[b, j].item(), ix[b, j].item()
            eps = 0.5 * min(product[b, j, y + dy, x + dx].item() for dy in (-1, 1) for dx in (-1, 1))
            for dy in (-1, 1):
                for dx in (-1, 1):
                    moved[b, j, y + dy, x + dx] += eps * dy * dx
    marginals = [moved.sum(2), moved.sum(3)]  # x, y
    torch.testing.assert_close(marginals, labels[:2])
    assert heatmap_loss([m.log() for m in marginals], labels[:2]) < 1e-5
    assert heatmap2d_loss(moved.log(), labels) > 1e-3
