"""DPM-Solver++(2M) for flow matching, as the official FlowDPMSolverMultistepScheduler ('dpm++')."""

from __future__ import annotations

import torch

from .base import MultistepSolver
from .schedules import dpmpp_sigmas


class DPMPPSolver(MultistepSolver):
    """Multistep DPM-Solver++ of order 2 (midpoint), first order at the first and last steps.

    Runs on the official DPM++ schedule, which starts at σ=1 exactly; the second step is therefore first
    order as well (its history point is pure noise).
    """

    def __init__(self, steps: int, shift: float) -> None:
        super().__init__(dpmpp_sigmas(steps, shift))

    def _update(self, velocity: torch.Tensor, sample: torch.Tensor, i: int) -> torch.Tensor:
        self._remember(sample - self.sigma(i) * velocity)
        return self._predict(sample, i)
