"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for ``WanDiT``, applied from outside the model.

Each block is one FSDP group (all-gathered just before it runs, freed after), and the root group
holds the rest (patch/text/time embeddings, head). Parameters become DTensors sharded on dim 0;
their names, and so the state-dict keys, do not change.

Checkpoints: sharded (DCP) checkpointing of model and optimizer is the training loop's job
(``torch.distributed.checkpoint.save/load`` with ``get_state_dict``); ``full_state_dict`` here only
gathers a plain state dict on rank 0 for export in the official layout.
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

from ..errors import InputError
from ..models.dit import WanDiT


def _shard_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """The 1-D mesh FSDP shards over: ``mesh`` itself, or all dims of a (dp, cp) mesh flattened into
    one, so the cp ranks (which hold identical weights) share the sharding too, as torchtitan does."""
    if mesh.ndim == 1:
        return mesh
    names = mesh.mesh_dim_names
    if not names:
        raise InputError(f"a {mesh.ndim}-D mesh needs dim names to be flattened for FSDP; build it with build_mesh")
    # DeviceMesh._flatten is torch's (private but long-standing) way to make a mesh over several dims.
    return mesh._flatten("_".join(names))


def apply_fsdp(
    model: WanDiT,
    mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = torch.float32,
    reshard_after_forward: bool = True,
    cpu_offload: bool = False,
) -> WanDiT:
    """Shard ``model`` over ``mesh`` in place (1-D, or the ("dp", "cp") mesh: sharded over all its ranks);
    returns ``model``.

    param_dtype: dtype the parameters are all-gathered and computed in (e.g. torch.bfloat16), the
        same numerics as ``model.to(param_dtype)``; fp32 master weights and optimizer states stay
        sharded. None keeps the parameters' dtype.
    reduce_dtype: dtype of the gradient reduce-scatter (fp32 by default, for exact averaging).
    reshard_after_forward: free each block's gathered parameters after its forward and gather them
        again in backward (less memory, more communication). The root group always keeps its small
        parameters between forward and backward, since the head runs last forward and first backward.
    cpu_offload: keep sharded parameters, gradients and optimizer states in CPU memory (needs a CUDA mesh).

    Gradients after backward are averaged over all ranks of the mesh (dp and cp); with context
    parallel that is exactly the average it needs (see context_parallel).
    """
    if not isinstance(model, WanDiT):
        raise InputError(f"apply_fsdp expects a WanDiT, got {type(model).__name__}")
    if cpu_offload and mesh.device_type == "cpu":
        raise InputError("cpu_offload needs an accelerator mesh: on a CPU mesh the parameters already live in "
                         "CPU memory (and FSDP's offload path requires an accelerator)")
    # No casting of forward inputs: the model keeps its residual stream, rope tables and timestep
    # embeddings in fp32 on purpose and casts to the parameter dtype itself where it should.
    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype, cast_forward_inputs=False)
    offload = CPUOffloadPolicy() if cpu_offload else OffloadPolicy()
    shard_mesh = _shard_mesh(mesh)
    for block in model.blocks:
        fully_shard(block, mesh=shard_mesh, mp_policy=mp, offload_policy=offload,
                    reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=shard_mesh, mp_policy=mp, offload_policy=offload, reshard_after_forward=False)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded state dict (official key names, CPU tensors) on rank 0; an empty dict on other ranks.

    A collective: every rank of the model's mesh must call it.
    """
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
