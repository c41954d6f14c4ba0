"""Several training processes (torchrun) as one: who am I, split the work, put the pieces back together.

Started by ``torchrun --nproc_per_node N [--nnodes M ...] -m edge.app.torchrun ...`` every process reads
RANK / WORLD_SIZE / LOCAL_RANK from its environment and joins one process group: gloo on CPUs, nccl when
each process has a GPU. Run plainly (no torchrun) the same code is one process of a world of one, and
nothing here talks to anyone.

Each process computes a contiguous share of the rows of an expensive, data-parallel result (the cached
activations, the pooled features); ``gather_rows`` then gives every process all rows in order, so the
training loop that follows sees the same data everywhere and DistributedDataParallel keeps the weights
identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def shard(self, n: int, rank: int | None = None) -> slice:
        """A rank's (default: this one's) contiguous share of n rows; shares differ by at most one row, so
        none is empty when n >= size."""
        rank = self.rank if rank is None else rank
        return slice(rank * n // self.size, (rank + 1) * n // self.size)


def join(timeout_minutes: float = 30.0) -> World:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); else a world of one on CPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if gpu else torch.device("cpu")
    if gpu:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo", timeout=timedelta(minutes=timeout_minutes))
    return World(dist.get_rank(), dist.get_world_size(), device)


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(world: World, part: torch.Tensor, n: int) -> torch.Tensor:
    """All n rows, in order, from each rank's ``part`` = rows[world.shard(n)] (CPU tensors)."""
    if not world.distributed:
        return part
    sizes = [len(range(n)[world.shard(n, rank)]) for rank in range(world.size)]
    padded = part.new_zeros((max(sizes), *part.shape[1:]))  # all_gather needs equal shapes
    padded[: len(part)] = part
    padded = _to_backend(world, padded)
    pieces = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(pieces, padded)
    return torch.cat([piece[:size].cpu() for piece, size in zip(pieces, sizes)])


def sum_all(world: World, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (every rank gets the result)."""
    if not world.distributed:
        return values
    tensor = _to_backend(world, torch.tensor(values, dtype=torch.float64))
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def agree(world: World, value: int) -> int:
    """Rank 0's ``value`` on every rank (decisions from wall-clock time, so that all ranks act together)."""
    if not world.distributed:
        return value
    tensor = _to_backend(world, torch.tensor([value], dtype=torch.int64))
    dist.broadcast(tensor, 0)
    return int(tensor.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def _to_backend(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """nccl needs tensors on the rank's GPU; gloo takes CPU tensors."""
    return tensor.to(world.device) if world.device.type == "cuda" else tensor
