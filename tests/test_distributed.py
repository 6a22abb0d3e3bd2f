"""DDP on CPU (gloo): two processes with half the batch each train like one process with all of it.

torch has no CPU SyncBatchNorm, so with BatchNorm each process normalises over its own half batch
and the runs differ a little; with BatchNorm swapped for a per-sample norm they agree to float
round-off. Both are checked, the first with the tolerance it earns.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_config
from torch import nn

from cliphand.config import ConfigError, LossWeights, TrainConfig
from cliphand.data.dataset import HandDataset
from cliphand.models.cliphand3d import CLIPHand3D
from cliphand.models.hierarchy import MeshHierarchy
from cliphand.training import distributed
from cliphand.training.trainer import train_phase

CFG = TrainConfig(
    epochs=2, batch_size=8, lr=2e-3, warmup_steps=2, workers=0, seed=3, checkpoint_every=100, amp="none",
    loss=LossWeights(joints=1.0, heatmap=0.5, clip=0.5, verts=0.0, mesh_joints=0.0),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _per_sample_norm(model: nn.Module) -> None:
    """Swap every BatchNorm2d for GroupNorm(1, C): statistics per sample, whatever the split."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.GroupNorm(1, child.num_features))


def initial_model(processed: Path, batchnorm: bool) -> CLIPHand3D:
    """The tiny model every run starts from."""
    torch.manual_seed(0)
    model = CLIPHand3D(tiny_config(), MeshHierarchy.load(processed / "hierarchy.npz"))
    if not batchnorm:
        _per_sample_norm(model)
    return model


def _train(rank: int, world: int, port: int, processed: Path, out: Path, batchnorm: bool) -> None:
    torch.set_num_threads(1)  # the same arithmetic in every run, and no oversubscription
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        assert distributed.current() == distributed.World(rank, world)
        model = initial_model(processed, batchnorm)
        train_set, val_set = HandDataset(processed, "train", 8.0), HandDataset(processed, "val", 8.0)
        result = train_phase(model, CFG, "pretrain", train_set, val_set, out / "checkpoint.pt")
        weights = {k: p.detach() for k, p in model.named_parameters()}
        torch.save({"history": result.history, "weights": weights}, out / f"rank{rank}.pt")
    finally:
        if world > 1:
            dist.destroy_process_group()


def run(world: int, processed: Path, out: Path, batchnorm: bool) -> dict:
    """Train in ``world`` fresh processes: the history and weights, checked equal on every rank."""
    out.mkdir(parents=True)
    mp.spawn(_train, args=(world, _free_port(), processed, out, batchnorm), nprocs=world, join=True)
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for other in results[1:]:
        assert other["history"] == results[0]["history"]
        for k, v in results[0]["weights"].items():
            assert torch.equal(other["weights"][k], v), f"{k} differs between ranks"
    return results[0]


def largest_difference(one: list[dict], two: list[dict], prefix: str) -> float:
    """The largest relative difference between two histories' values whose key starts with ``prefix``."""
    return max(abs(a[k] - b[k]) / abs(a[k]) for a, b in zip(one, two) for k in a if k.startswith(prefix))


@pytest.mark.slow
# With BatchNorm each process normalises over its half of the batch, so the runs only agree
# approximately (largest loss difference 2.1 % on the current renders); without it, to round-off:
# the losses to 4e-6, the validation error after six Adam steps to 1.6e-4 (the summation order's
# round-off grows step by step). Halves of the wrong batches (every rank dealt rank 0's) differ by 5 %.
@pytest.mark.parametrize("batchnorm, train_tol, val_tol", [(False, 1e-4, 1e-3), (True, 3e-2, 5e-2)])
def test_two_processes_train_like_one_with_the_same_global_batch(processed_hands, tmp_path, batchnorm, train_tol, val_tol):
    one = run(1, processed_hands, tmp_path / "one", batchnorm)["history"]
    two = run(2, processed_hands, tmp_path / "two", batchnorm)["history"]
    # It learns (the joint term: the contrastive term's axis takes turns, so the total moves with it).
    assert [h["epoch"] for h in two] == [1, 2] and two[-1]["train_loss_joints"] < two[0]["train_loss_joints"]
    train, val = largest_difference(one, two, "train_loss"), largest_difference(one, two, "val_pa_mpjpe")
    print(f"batchnorm={batchnorm}: 1 vs 2 processes, largest relative difference: losses {train:.1e}, val PA-MPJPE {val:.1e}")
    assert train < train_tol and val < val_tol


@pytest.mark.parametrize("world", [1, 2, 4])
def test_the_sampler_deals_the_same_global_batches_to_any_number_of_processes(world):
    data, batch = list(range(23)), 8  # 23 samples: 2 whole global batches, the rest dropped
    dealt = [distributed.ResumableSampler(data, distributed.World(r, world), seed=5) for r in range(world)]
    for sampler in dealt:
        sampler.set_position(epoch=2, start=0)
    orders = [list(s) for s in dealt]
    per_rank = batch // world
    batches = [sorted(i for o in orders for i in o[k * per_rank:(k + 1) * per_rank]) for k in range(2)]
    one = distributed.ResumableSampler(data, distributed.World(), seed=5)
    one.set_position(epoch=2, start=0)
    whole = list(one)
    assert batches == [sorted(whole[:8]), sorted(whole[8:16])]
    assert {epoch for epoch, _ in whole} == {2}  # (epoch, index) keys: augmentation draws from both
    dealt[0].set_position(epoch=2, start=per_rank)  # resume after one step
    assert list(dealt[0]) == orders[0][per_rank:] and len(dealt[0]) == len(orders[0]) - per_rank
    dealt[0].set_position(epoch=3, start=0)
    assert list(dealt[0]) != orders[0]  # a new permutation each epoch


def test_the_batch_must_split_over_processes_and_micro_batches():
    assert TrainConfig(batch_size=32, grad_accum=2).micro_batch(4, "pretrain") == 4
    with pytest.raises(ConfigError, match=r"pretrain\.batch_size: 30 does not split into 4 process\(es\) x 2"):
        TrainConfig(batch_size=30, grad_accum=2).micro_batch(4, "pretrain")
    with pytest.raises(ConfigError, match=r"finetune\.batch_size: the contrastive loss needs >= 2 samples"):
        TrainConfig(batch_size=4, grad_accum=4).micro_batch(1, "finetune")
