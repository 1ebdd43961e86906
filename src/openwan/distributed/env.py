"""Process-group setup from the environment that ``torchrun`` provides.

``torchrun`` (torch.distributed.run) starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; ``init_distributed`` reads them. Without them the program is a single
process: no process group is created and the world size is 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from ..devices import resolve_device
from ..errors import InputError

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_ENV: DistributedEnv | None = None


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in the job. ``backend`` is None for a single process (no process group)."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_var(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer") from None


def init_distributed(device: str | torch.device | None = None) -> DistributedEnv:
    """Join the process group described by the torchrun environment variables (idempotent).

    device: "cpu", "cuda" or None/"auto" (CUDA when available). On CUDA each process uses GPU
    LOCAL_RANK and the backend is "cpu:gloo,cuda:nccl" (NCCL for GPU tensors, Gloo for CPU ones such
    as offloaded state dicts); on the CPU it is Gloo. A process group created earlier by the caller
    is adopted as is.
    """
    global _ENV
    if _ENV is not None:
        if device is not None and str(device) != "auto" and resolve_device(device).type != _ENV.device.type:
            raise InputError(f"distributed is already initialised on {_ENV.device}; cannot switch to {device!r}")
        return _ENV

    present = [v for v in _TORCHRUN_VARS if v in os.environ]
    if not present and not dist.is_initialized():
        _ENV = DistributedEnv(rank=0, world_size=1, local_rank=0, device=resolve_device(device), backend=None)
        return _ENV
    if not dist.is_initialized() and len(present) != len(_TORCHRUN_VARS):
        missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
        raise InputError(f"partial torchrun environment: {', '.join(present)} set but {', '.join(missing)} "
                         "missing; launch with torchrun or unset them all to run as a single process")

    dev = resolve_device(device)
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"multi-process runs need CPU or CUDA devices, got {dev.type!r}")
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = _int_var("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    else:
        rank, world, local_rank = _int_var("RANK"), _int_var("WORLD_SIZE"), _int_var("LOCAL_RANK")
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices are "
                             "visible; start at most that many processes per node")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "cpu:gloo,cuda:nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if dist.is_initialized():
        backend = str(dist.get_backend())
    else:
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    _ENV = DistributedEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev, backend=backend)
    return _ENV


def build_mesh(env: DistributedEnv, dp: int, cp: int) -> DeviceMesh | None:
    """A ("dp", "cp") device mesh over all ranks, or None for a single process (dp = cp = 1).

    Ranks next to each other share a cp group (cp is the inner dim), so on multi-GPU nodes the
    all-to-all-heavy cp traffic stays within a node when cp divides the GPUs per node.
    """
    if dp < 1 or cp < 1:
        raise InputError(f"dp ({dp}) and cp ({cp}) must be at least 1")
    if dp * cp != env.world_size:
        raise InputError(f"dp × cp = {dp} × {cp} = {dp * cp} must equal the world size {env.world_size}")
    if env.backend is None:
        return None
    return init_device_mesh(env.device.type, (dp, cp), mesh_dim_names=("dp", "cp"))


def is_main() -> bool:
    """True on global rank 0, and in a single process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank; nothing to wait for in a single process."""
    if dist.is_initialized():
        if _ENV is not None and _ENV.device.type == "cuda":
            dist.barrier(device_ids=[_ENV.device.index])
        else:
            dist.barrier()


def destroy() -> None:
    """Tear down the process group (if any) and forget the cached environment."""
    global _ENV
    if dist.is_initialized():
        dist.destroy_process_group()
    _ENV = None
