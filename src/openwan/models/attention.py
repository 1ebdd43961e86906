"""Non-causal, unmasked multi-head attention with a choice of kernel.

Layout is ``[B, L, heads, head_dim]`` in and out, the layout the DiT produces after its projections
and the one flash-attention wants, so no transposes are needed on the fast path.

Backends:
  ``flash3``  flash-attention 3 (``flash_attn_interface``), Hopper GPUs;
  ``flash2``  flash-attention 2 (``flash_attn``);
  ``sdpa``    ``torch.nn.functional.scaled_dot_product_attention`` (any device, any dtype).

By default the fastest installed flash kernel is used for CUDA tensors in fp16/bf16 and SDPA
otherwise. ``backend=`` or the environment variable ``OPENWAN_ATTENTION`` forces one; a forced
backend that cannot run raises instead of silently falling back, so benchmarks measure what they say.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

BACKENDS = ("sdpa", "flash2", "flash3")
ENV_VAR = "OPENWAN_ATTENTION"

_FLASH_MODULES = {"flash3": "flash_attn_interface", "flash2": "flash_attn"}
_HALF = (torch.float16, torch.bfloat16)


@functools.cache
def _flash_fn(backend: str) -> Callable | None:
    """``flash_attn_func`` of a flash backend, or None when it is not installed (imported once)."""
    try:
        module = importlib.import_module(_FLASH_MODULES[backend])
    except ImportError:
        return None
    return module.flash_attn_func


def available_backends() -> list[str]:
    """Backends that can run on this machine (flash ones still need CUDA tensors)."""
    return ["sdpa"] + [b for b in ("flash2", "flash3") if _flash_fn(b) is not None]


def _resolve(backend: str | None, q: torch.Tensor) -> str:
    forced = backend or os.environ.get(ENV_VAR) or None
    if forced is None:
        if q.is_cuda and q.dtype in _HALF and q.shape[-1] <= 256:
            for name in ("flash3", "flash2"):
                if _flash_fn(name) is not None:
                    return name
        return "sdpa"
    if forced not in BACKENDS:
        raise InputError(f"unknown attention backend {forced!r} (from {'argument' if backend else ENV_VAR}); "
                         f"choose one of {', '.join(BACKENDS)}")
    if forced != "sdpa":
        if _flash_fn(forced) is None:
            raise InputError(f"attention backend {forced!r} was requested but its package "
                             f"{_FLASH_MODULES[forced]!r} is not installed; install it or use 'sdpa'")
        if not q.is_cuda:
            raise InputError(f"attention backend {forced!r} needs CUDA tensors, got {q.device.type}; use 'sdpa'")
    return forced


# Above this many scores per head (q tokens x k tokens) the upcast copies cost more than they save.
_UPCAST_MAX_SCORES = 256 * 256


def _cpu_half_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """True where SDPA would run its CPU flash kernel in bf16/fp16 on short sequences and autograd will
    need its backward. That backward has a large fixed cost in half precision: at 80 tokens the fp32
    kernel plus the casts takes about 0.6x the time, while from ~320 tokens on the bf16 kernel is as fast
    (benchmarks/bench_attention.py). So CPU training of small DiTs computes attention in fp32,
    which is also the more precise; long sequences and inference keep the input dtype."""
    return (q.device.type == "cpu" and q.dtype in _HALF and q.shape[1] * k.shape[1] <= _UPCAST_MAX_SCORES
            and torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # SDPA wants [B, H, L, D]; the transposes are views, SDPA's kernels accept the strides.
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """softmax(q·kᵀ/√d)·v over all keys.

    q: [B, Lq, H, D], k/v: [B, Lk, H, D]  ->  [B, Lq, H, D] in q's dtype.
    """
    name = _resolve(backend, q)
    if name == "sdpa":
        if _cpu_half_backward(q, k, v):
            with torch.autocast("cpu", enabled=False):  # CPU autocast would cast the fp32 inputs back
                return _sdpa(q.float(), k.float(), v.float()).to(q.dtype)
        return _sdpa(q, k, v)

    # Flash kernels only take fp16/bf16: fp32 inputs go through bf16 and back, like the official code.
    out_dtype = q.dtype
    if out_dtype not in _HALF:
        q, k, v = (t.to(torch.bfloat16) for t in (q, k, v))
    out = _flash_fn(name)(q, k, v)
    if isinstance(out, tuple):  # flash-attention 3 releases differ in returning (out, lse) or out
        out = out[0]
    return out.to(out_dtype)


class Attention(nn.Module):
    """Parameter-free module around :func:`attention` for self-attention.

    A module (not a bare call) so parallelism applied from outside the model, such as Ulysses
    context parallel, can swap it for a distributed version without touching the model code.
    It owns no parameters or buffers, so state-dict keys are unaffected.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return attention(q, k, v)
