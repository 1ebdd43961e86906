"""Parallelism applied from outside the model (torchtitan style): FSDP2 sharding and Ulysses
context parallel for ``WanDiT``, on top of ``torch.distributed`` and processes started by torchrun.

Typical training setup (every rank of a cp group must get the same batch)::

    env = init_distributed()
    mesh = build_mesh(env, dp=world // cp, cp=cp)
    apply_context_parallel(model, mesh["cp"])   # skip when cp == 1
    apply_fsdp(model, mesh)                      # shards over dp × cp; averages gradients over both
"""

from .context_parallel import (
    UlyssesAttention,
    apply_context_parallel,
    average_gradients,
    check_cp_shapes,
    remove_context_parallel,
)
from .env import DistributedEnv, barrier, build_mesh, destroy, init_distributed, is_main
from .fsdp import apply_fsdp, full_state_dict

__all__ = [
    "DistributedEnv", "init_distributed", "build_mesh", "is_main", "barrier", "destroy",
    "apply_fsdp", "full_state_dict",
    "apply_context_parallel", "remove_context_parallel", "average_gradients", "check_cp_shapes",
    "UlyssesAttention",
]
