"""Multi-process training: torch's launcher, process group, DDP, sampler and collectives.

A training stage whose ``launch.nproc`` is above 1 starts itself again under torchrun
(``torch.distributed.run --standalone``) with that many processes on this machine; started by
torchrun directly (several nodes through torchrun's rendezvous, say) it joins the process group
torchrun describes in the environment. Gloo on CPU, NCCL on CUDA. Every helper here is a no-op
for a single process, so the training loop has one code path. Rank 0 alone logs, checkpoints and
writes outputs (the trainer and ``cliphand.stages.train`` check ``World.is_main``).
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from cliphand.devices import resolve_device

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # rank on this node: picks the CUDA device

    @property
    def is_main(self) -> bool:
        """Whether this process logs, checkpoints and writes outputs."""
        return self.rank == 0


def launched() -> bool:
    """Whether a launcher (torchrun) started this process as one rank of a process group."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def current() -> World:
    """The world of the initialised process group, or a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def relaunch(nproc: int, module: str, args: Sequence[str] = ()) -> None:
    """Run ``python -m module args`` under torchrun with ``nproc`` processes on this machine.

    As a module, so each process imports the package from the working directory (a ``dvc exp run
    --temp`` copy runs its own code). Raises CalledProcessError when any process fails (torchrun
    prints which and why).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", module, *args]
    log.info("starting %d processes: %s", nproc, " ".join(cmd))
    subprocess.run(cmd, check=True)


@contextmanager
def process_group(device: str) -> Iterator[World]:
    """Join torchrun's process group for the duration (a single-process World outside torchrun)."""
    if not launched() or dist.is_initialized():
        yield current()
        return
    cuda = resolve_device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def wrap(module: nn.Module, world: World, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel over the world (itself for one process).

    On CUDA its BatchNorm layers become SyncBatchNorm, so their statistics cover the global batch;
    torch has no CPU SyncBatchNorm, so on CPU each process normalises over its own samples.
    Unused parameters are searched for because a zero loss weight leaves a part out of the graph.
    """
    if world.size == 1:
        return module
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def accumulating(net: nn.Module, accumulate: bool) -> AbstractContextManager:
    """Skip DDP's gradient all-reduce while ``accumulate`` (a micro-batch before the step's last)."""
    if accumulate and isinstance(net, DistributedDataParallel):
        return net.no_sync()
    return nullcontext()


def mean(values: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of ``values`` over the processes (every process gets it)."""
    if world.size == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world.size


def gather_objects(obj: T, world: World) -> list[T]:
    """Every process's ``obj``, in rank order."""
    if world.size == 1:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def from_main(obj: T, world: World) -> T:
    """Rank 0's ``obj`` on every process."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ResumableSampler(DistributedSampler):
    """DistributedSampler (one seeded permutation per epoch, dealt round-robin) that can start mid-epoch.

    With ``drop_last`` each process gets ``len(dataset) // world`` samples; the ``k``-th batch of
    ``b`` samples of every process together are the permutation's positions ``[k·b·world,
    (k+1)·b·world)``, so the global batches do not depend on the number of processes.
    """

    def __init__(self, dataset: Dataset, world: World, seed: int) -> None:
        super().__init__(dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Deal epoch ``epoch``'s permutation, skipping this process's first ``start`` samples."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """``(epoch, index)`` pairs: the dataset draws a sample's augmentation from both."""
        return ((self.epoch, i) for i in itertools.islice(super().__iter__(), self.start, None))

    def __len__(self) -> int:
        return super().__len__() - self.start
