"""Plain Euler integration of the flow ODE dx/dσ = v."""

from __future__ import annotations

import torch

from .base import FlowSolver
from .schedules import unipc_sigmas


class EulerSolver(FlowSolver):
    """x_{i+1} = x_i + (σ_{i+1} − σ_i)·v on the official UniPC schedule (a first-order baseline)."""

    def __init__(self, steps: int, shift: float) -> None:
        super().__init__(unipc_sigmas(steps, shift))

    def _update(self, velocity: torch.Tensor, sample: torch.Tensor, i: int) -> torch.Tensor:
        return sample + (self.sigma(i + 1) - self.sigma(i)) * velocity
