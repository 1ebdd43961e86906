"""``[run] compile = true``: a probe that fails at start-up, not after hours of other steps, when
torch.compile cannot build kernels here (inductor needs a C++ compiler for CPU code, Triton for CUDA)."""

from __future__ import annotations

import torch

from ..errors import InputError


def _probe(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x * 2.0 + 1.0)


def require_torch_compile(device: torch.device, where: str) -> None:
    """Compile and run a two-op function on ``device``; on failure raise an InputError that names the
    setting (``where``), the cause and the fixes. Seconds the first time; cached after that."""
    try:
        torch.compile(_probe)(torch.ones(8, device=device))
    except Exception as e:  # inductor raises many kinds (missing compiler, Triton, codegen); all mean "cannot"
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{where}: run.compile = true, but torch.compile does not work on {device.type} here "
                         f"({type(e).__name__}: {cause[:300]}). Install a C++ compiler (g++ or clang; or point "
                         "CXX at one) for CPU training, or set run.compile = false") from e
