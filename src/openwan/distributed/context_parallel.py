"""Ulysses context (sequence) parallelism for ``WanDiT``, applied from outside the model.

Every rank of the cp group gets the same inputs (latents, timesteps, text). The model is changed
only through hooks and by swapping the parameter-free ``Attention`` modules of self-attention:

1. A forward pre-hook on each block hands it this rank's contiguous 1/P of the rope tables; the one
   on ``blocks[0]`` also cuts this rank's 1/P of the tokens out of the patchified sequence, so every
   block runs on L/P tokens (MLP, adaLN, cross-attention to the full text: all per-token, no
   communication).
2. Self-attention's ``Attention`` becomes ``UlyssesAttention``: an all-to-all turns q, k, v from
   [B, L/P, H, d] into [B, L, H/P, d], attention runs over the full sequence for H/P heads, and an
   all-to-all turns the output back into [B, L/P, H, d].
3. A forward hook on ``head`` (per-token, so it runs on L/P tokens too) all-gathers its output, so
   unpatchify and the returned velocity are full and identical on every rank.

Gradient scaling. Let ℓ_r be rank r's loss on the (identical) full output. The gather's backward is a
reduce-scatter sum, so the gradient reaching rank r's token chunk is Σ_s ∂ℓ_s/∂y[chunk r], which is
P·∂J/∂y[chunk r] for J = (1/P)·Σ_s ℓ_s. Everything between the split and the gather is per-token
except the all-to-alls, which are permutations whose backward is the inverse permutation, so that
factor P carries through unchanged: on rank r, each parameter gets P × (its gradient of J from
the tokens of chunk r), and the split's backward (a plain slice) sends the same into the
embeddings, which run redundantly on all tokens but only get gradients from chunk r. Averaging over
the P ranks gives Σ_r (gradient of J from chunk r) = ∂J/∂θ. When all ranks compute the same loss
(the intended use), J = ℓ, so the averaged gradients equal the single-process ones. The average
comes for free from FSDP when it shards over dp×cp (its reduce-scatter divides by the dp·cp world
size, which also averages over dp); without FSDP call ``average_gradients(model, cp_group)``.

Gradient checkpointing: the split and the all-to-alls are re-run in the recompute of a checkpointed
block (the same order on every rank); the gather sits on the head, outside the checkpointed blocks.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed import ProcessGroup
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor
from torch.utils.hooks import RemovableHandle

from ..errors import InputError
from ..models.dit import Block, WanDiT
from .collectives import all_to_all, gather_sequence

MODES = ("ulysses",)
_STATE_ATTR = "_openwan_context_parallel"


def check_cp_shapes(heads: int, cp: int, tokens: int | None = None) -> None:
    """Raise InputError unless ``heads`` and ``tokens`` (L = f·h·w after patchify) divide by ``cp``."""
    if heads % cp:
        raise InputError(f"Ulysses context parallel splits the {heads} attention heads over {cp} ranks, "
                         f"but {heads} is not divisible by {cp}; use a cp size that divides {heads}")
    if tokens is not None and tokens % cp:
        raise InputError(f"Ulysses context parallel splits the {tokens} video tokens (f·h·w after patchify) "
                         f"over {cp} ranks, but {tokens} is not divisible by {cp}; change the frame count "
                         f"or resolution so the token count is a multiple of {cp}, or use a cp size "
                         f"that divides {tokens}")


def _resolve_group(group: ProcessGroup | DeviceMesh) -> ProcessGroup:
    if isinstance(group, DeviceMesh):
        if group.ndim != 1:
            raise InputError(f"pass a 1-D device mesh (e.g. mesh['cp']), got one with dims {group.mesh_dim_names}")
        return group.get_group()
    if isinstance(group, ProcessGroup):
        return group
    raise InputError(f"expected a ProcessGroup or a 1-D DeviceMesh, got {type(group).__name__}")


class UlyssesAttention(nn.Module):
    """Self-attention over a sequence sharded across ``group``: q, k, v [B, L/P, H, d] -> [B, L/P, H, d].

    Wraps the model's own (parameter-free) attention module, which sees [B, L, H/P, d].
    """

    def __init__(self, inner: nn.Module, group: ProcessGroup):
        super().__init__()
        self.inner = inner
        self.group = group

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # One all-to-all for q, k and v together: scatter heads (dim 3), gather sequence (dim 2).
        qkv = all_to_all(torch.stack((q, k, v)), scatter_dim=3, gather_dim=2, group=self.group)
        out = self.inner(*qkv.unbind(0))  # [B, L, H/P, d]
        return all_to_all(out, scatter_dim=1, gather_dim=2, group=self.group)


@dataclass
class _CPState:
    group: ProcessGroup
    handles: list[RemovableHandle] = field(default_factory=list)
    attn_modules: list[nn.Module] = field(default_factory=list)  # the originals, restored on removal


def _block_pre_hook(index: int, group: ProcessGroup):
    signature = inspect.signature(Block.forward)

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        bound = signature.bind(module, *args, **kwargs)
        x, rope = bound.arguments["x"], bound.arguments["rope"]
        world, rank = dist.get_world_size(group), dist.get_rank(group)
        tokens = rope[0].shape[0]  # rope tables always cover the full sequence
        check_cp_shapes(module.self_attn.num_heads, world, tokens)
        chunk = tokens // world
        if index == 0:
            if x.shape[1] != tokens:
                raise InputError(f"blocks[0] expects the full {tokens}-token sequence, got {x.shape[1]} tokens")
            bound.arguments["x"] = x.narrow(1, rank * chunk, chunk)  # backward: grad lands in this chunk only
        elif x.shape[1] != chunk:
            raise InputError(f"blocks[{index}] expects this rank's {chunk} of {tokens} tokens, got {x.shape[1]}; "
                             "context-parallel blocks must be called from WanDiT.forward")
        bound.arguments["rope"] = tuple(t.narrow(0, rank * chunk, chunk) for t in rope)
        return bound.args[1:], bound.kwargs

    return hook


def apply_context_parallel(
    model: WanDiT, group: ProcessGroup | DeviceMesh, *, mode: str = "ulysses"
) -> WanDiT:
    """Shard ``model``'s token sequence over ``group`` (a ProcessGroup or a 1-D mesh such as
    ``mesh["cp"]``), in place; returns ``model``.

    Every rank of ``group`` must call the model with identical inputs; each gets the full output.
    Apply before or after ``apply_fsdp`` (state-dict keys do not change). Undo with
    ``remove_context_parallel``.
    """
    if mode not in MODES:
        raise InputError(f"unknown context-parallel mode {mode!r}; supported: {', '.join(MODES)}")
    if not isinstance(model, WanDiT):
        raise InputError(f"apply_context_parallel expects a WanDiT, got {type(model).__name__}")
    if getattr(model, _STATE_ATTR, None) is not None:
        raise InputError("context parallel is already applied to this model; call remove_context_parallel first")
    pg = _resolve_group(group)
    world = dist.get_world_size(pg)
    check_cp_shapes(model.config.num_heads, world)  # the token count is only known at forward time

    state = _CPState(pg)
    for i, block in enumerate(model.blocks):
        state.handles.append(block.register_forward_pre_hook(_block_pre_hook(i, pg), with_kwargs=True))
        state.attn_modules.append(block.self_attn.attn)
        block.self_attn.attn = UlyssesAttention(block.self_attn.attn, pg)
    # The head is per-token: run it on the local tokens and gather its (narrower) output.
    state.handles.append(model.head.register_forward_hook(lambda mod, args, out: gather_sequence(out, 1, pg)))
    setattr(model, _STATE_ATTR, state)
    return model


def remove_context_parallel(model: WanDiT) -> WanDiT:
    """Undo ``apply_context_parallel``: remove the hooks and restore the original attention modules."""
    state: _CPState | None = getattr(model, _STATE_ATTR, None)
    if state is None:
        raise InputError("context parallel is not applied to this model")
    for handle in state.handles:
        handle.remove()
    for block, attn in zip(model.blocks, state.attn_modules):
        block.self_attn.attn = attn
    setattr(model, _STATE_ATTR, None)
    return model


@torch.no_grad()
def average_gradients(model: nn.Module, group: ProcessGroup | DeviceMesh) -> None:
    """Average ``.grad`` of every parameter over ``group`` in place (one all-reduce per dtype).

    For context parallel without FSDP: after it, every cp rank holds the single-process gradients
    (see the module docstring). Not for FSDP models: their reduce-scatter already averages.
    """
    pg = _resolve_group(group)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if any(isinstance(g, DTensor) for g in grads):
        raise InputError("gradients are DTensors (FSDP): FSDP already averages them over its mesh; "
                         "do not call average_gradients on an FSDP model")
    for dtype in {g.dtype for g in grads}:
        group_grads = [g for g in grads if g.dtype == dtype]
        flat = torch.cat([g.reshape(-1) for g in group_grads])
        dist.all_reduce(flat, op=dist.ReduceOp.AVG, group=pg)
        for g, avg in zip(group_grads, flat.split([g.numel() for g in group_grads])):
            g.copy_(avg.view_as(g))
