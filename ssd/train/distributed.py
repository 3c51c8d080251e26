"""PyTorch DDP under ``torchrun``: process group set-up, rank helpers, metric reduction.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything degrades to a
single process with rank 0, so the training code has one path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group ``torchrun`` describes (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    env = DistEnv(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return env


def elastic_restarts() -> int:
    """How many times ``torchrun`` has restarted this worker group (its
    ``TORCHELASTIC_RESTART_COUNT``; 0 outside torchrun). After a restart, training must
    continue from the last checkpoint instead of from step 0, without a ``--resume`` that
    torchrun cannot add to the command it re-runs."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Mean of a tensor over all ranks (identity in a single process)."""
    if not env.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / env.world_size


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def end_group() -> None:
    """The last step of a distributed run, on every rank: wait until all ranks are here
    (rank 0 after its last write: the detector, the MLflow run file, dvclive's files), then
    leave the process group. No worker exits before rank 0's outputs are complete, so the
    node that runs ``dvc commit train`` when its own workers exit (pipelines/launch.py)
    records finished outputs whichever global rank it hosts, and without relying on
    torchrun's exit barrier (300 s, not configurable). A no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def average_buffers(model: torch.nn.Module, env: DistEnv) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over all ranks, so
    every rank holds the same model (each rank saw different batches)."""
    if not env.enabled:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf.div_(env.world_size)


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """Whether ``flag`` holds on any rank: the same answer on every rank (so all of them
    take the same branch), ``flag`` itself in a single process."""
    if not env.enabled:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
