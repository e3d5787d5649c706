"""Data-parallel set-up: the one place that knows about ranks.

Reads torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK) or Slurm's (SLURM_PROCID,
SLURM_NTASKS, SLURM_LOCALID); NCCL on GPUs, gloo on CPU (so that DDP is testable here).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env(env: dict | None = None) -> World:
    """Rank, world size and local rank from torchrun's, else Slurm's, else single process."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" in env and "RANK" in env:
        return World(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env and int(env["SLURM_NTASKS"]) > 1:
        return World(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]),
                     int(env.get("SLURM_LOCALID", 0)))
    return World()


def init(device: str = "auto") -> tuple[World, torch.device]:
    """Initialise the process group when there is more than one process; pick the device."""
    world = world_from_env()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", world.local_rank % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(dev)
    if world.distributed and not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR",
                                                            "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", "29500")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=world.rank,
                                world_size=world.size)
    return world, dev


def global_share(count: torch.Tensor) -> torch.Tensor:
    """``W n_r / sum_r n_r`` for this rank's ``n_r`` terms (1 on a single process).

    A loss that is a mean over a varying number of terms per sample (HD-CLIP's level and slerp
    losses average over the types present) times this factor gives, after DDP averages the
    gradients of the W ranks, exactly the gradient of the mean over all ranks' terms.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return torch.ones((), device=count.device)
    total = count.detach().float().clone()
    dist.all_reduce(total)
    return dist.get_world_size() * count.float() / total.clamp_min(1.0)


def agree_max(value: int, world: World, device: torch.device) -> int:
    """The largest ``value`` over all ranks (``value`` itself on a single process).

    A signal reaches the ranks of a job at different steps; every rank asks this after each
    step, so that all of them leave the loop after the same step and none waits forever in
    the next step's all-reduce."""
    if not (world.distributed and dist.is_initialized()):
        return value
    flag = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
