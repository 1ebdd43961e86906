"""Noise-level (sigma) schedules of the official Wan 2.1 samplers.

Sigmas run from noisy (near 1) to clean (0). Each schedule has ``steps + 1`` entries: the ``steps`` levels
the model is evaluated at plus a final 0. Values are built in float64 with numpy, exactly as the official
code does, because the integer model timesteps are truncated from these float64 values: a 1-ulp change can
move a timestep by one. Solvers store them as float32, again like the official schedulers.
"""

from __future__ import annotations

import numpy as np
import torch

from ..configs import NUM_TRAIN_TIMESTEPS

# The official FlowUniPCMultistepScheduler builds its training sigmas as float32 and reads the largest back
# with ``.item()``, so its schedules start at float32(0.999) = 0.99900001287..., not at 0.999.
UNIPC_SIGMA_MAX = float(np.float32(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS))


def shift_sigmas(sigmas: np.ndarray | torch.Tensor, shift: float) -> np.ndarray | torch.Tensor:
    """Time shift σ' = s·σ / (1 + (s−1)·σ): s > 1 spends more steps at high noise."""
    # Same operation order as the official code so that float64 results agree bit for bit.
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def _with_final_zero(sigmas: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([sigmas, [0.0]]))


def unipc_sigmas(steps: int, shift: float) -> torch.Tensor:
    """Official UniPC schedule (float64, ``steps + 1``): linspace(σ_max, 0, steps+1)[:-1], shifted, then 0."""
    sigmas = np.linspace(UNIPC_SIGMA_MAX, 0.0, steps + 1)[:-1]
    return _with_final_zero(shift_sigmas(sigmas, shift))


def dpmpp_sigmas(steps: int, shift: float) -> torch.Tensor:
    """Official DPM++ schedule (float64, ``steps + 1``): ``get_sampling_sigmas`` (starts at exactly 1), then 0.

    The official DPM++ scheduler is built with shift=1 and receives these already-shifted sigmas, so its own
    shift is the identity and only the final 0 is appended.
    """
    sigmas = np.linspace(1.0, 0.0, steps + 1)[:steps]
    return _with_final_zero(shift_sigmas(sigmas, shift))


def model_timesteps(sigmas: torch.Tensor) -> torch.Tensor:
    """Integer timesteps the DiT receives: σ·1000 of the float64 schedule, truncated toward zero (int64 cast).

    ``sigmas`` is a full schedule; its final 0 is not a model evaluation and is dropped.
    """
    return (sigmas[:-1].double() * NUM_TRAIN_TIMESTEPS).to(torch.int64)
