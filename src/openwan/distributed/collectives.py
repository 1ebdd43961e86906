"""Autograd-aware collectives for sequence (context) parallelism.

Each op is a ``torch.autograd.Function`` whose backward is the adjoint of its forward, so training
through them gives exact gradients:

* ``all_to_all``: a permutation of data between ranks; its adjoint is the inverse permutation,
  i.e. the all-to-all with the scatter and gather dims swapped.
* ``gather_sequence``: all-gather along a dim; its adjoint is a reduce-scatter (sum) along that dim:
  rank r's chunk feeds every rank's copy of the gathered tensor, so its gradient is the sum of
  the gradients of all those copies.

They work on any backend with ``all_to_all_single`` / ``all_gather_single`` /
``reduce_scatter_single`` (NCCL, and Gloo on the CPU).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup


def _all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup) -> torch.Tensor:
    world = dist.get_world_size(group)
    send = torch.stack(x.chunk(world, dim=scatter_dim))  # [P, ...]: chunk j goes to group rank j
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return torch.cat(recv.unbind(0), dim=gather_dim)  # chunk j came from group rank j


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup) -> torch.Tensor:
        ctx.dims, ctx.group = (scatter_dim, gather_dim), group
        return _all_to_all(x, scatter_dim, gather_dim, group)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        scatter_dim, gather_dim = ctx.dims
        return _all_to_all(grad, gather_dim, scatter_dim, ctx.group), None, None, None


class _GatherSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        world = dist.get_world_size(group)
        out = x.new_empty((world * x.shape[0], *x.shape[1:]))  # rank j's x at rows j·n .. (j+1)·n
        dist.all_gather_single(out, x.contiguous(), group=group)
        return torch.cat(out.chunk(world, dim=0), dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        world = dist.get_world_size(ctx.group)
        send = torch.cat(grad.chunk(world, dim=ctx.dim), dim=0)  # rank j's share at rows j·n .. (j+1)·n
        out = grad.new_empty((send.shape[0] // world, *send.shape[1:]))
        dist.reduce_scatter_single(out, send, op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None, None


def all_to_all(x: torch.Tensor, scatter_dim: int, gather_dim: int, group: ProcessGroup) -> torch.Tensor:
    """Split ``x`` into P chunks along ``scatter_dim``, send chunk j to rank j, and concatenate the
    chunks received (in rank order) along ``gather_dim``. ``x.shape[scatter_dim]`` must divide by P."""
    return _AllToAll.apply(x, scatter_dim, gather_dim, group)


def gather_sequence(x: torch.Tensor, dim: int, group: ProcessGroup) -> torch.Tensor:
    """Concatenate every rank's ``x`` (same shape everywhere) along ``dim`` in rank order.
    Backward: reduce-scatter (sum) of the gradient along ``dim``."""
    return _GatherSequence.apply(x, dim, group)
