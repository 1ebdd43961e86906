"""UniPC (arXiv 2302.04867) for flow matching, as the official FlowUniPCMultistepScheduler defaults.

Order 2, data prediction, B(h) = e^{−h} − 1 ("bh2"), first order at the first and last steps, final σ 0,
UniC corrector on every step after the first. With these settings the UniP-2 predictor (ρ = 1/2) is
identical to the DPM-Solver++(2M) step, so only the corrector is specific to UniPC.
"""

from __future__ import annotations

import math

import torch

from .base import MultistepSolver, log_snr
from .schedules import unipc_sigmas


def unic_weights(h: float, r: float) -> tuple[float, float]:
    """Order-2 UniC weights (ρ_prev, ρ_new) for a step of log-SNR length h.

    They solve Σ_m ρ_m·r_m^(k−1) = k!·g_k / B(h), k = 1, 2, over the points r = (λ_prev − λ_s)/h (behind the
    step, so negative) and 1 (the new end point), where g_k = z·φ_{k+1}(z) at z = −h (data prediction).
    """
    z = -h
    b_h = math.expm1(z)
    g1 = b_h / z - 1.0  # z·φ_2(z)
    g2 = g1 / z - 0.5  # z·φ_3(z)
    b1, b2 = g1 / b_h, 2.0 * g2 / b_h
    # Rows (1, 1) and (r, 1) of the Vandermonde system, solved by hand.
    rho_prev = (b1 - b2) / (1.0 - r)
    return rho_prev, b1 - rho_prev


class UniPCSolver(MultistepSolver):
    """UniPC-2 (bh2) predictor–corrector on the official UniPC schedule."""

    def __init__(self, steps: int, shift: float) -> None:
        super().__init__(unipc_sigmas(steps, shift))
        self._last_sample: torch.Tensor | None = None  # corrected sample the previous step started from

    def _update(self, velocity: torch.Tensor, sample: torch.Tensor, i: int) -> torch.Tensor:
        # x0 comes from the uncorrected sample the model actually saw.
        x0 = sample - self.sigma(i) * velocity
        if i > 0:
            sample = self._correct(x0, i - 1)
        self._remember(x0)
        self._last_sample = sample
        return self._predict(sample, i)

    def _correct(self, x0_new: torch.Tensor, j: int) -> torch.Tensor:
        """UniC: redo the step σ_j → σ_{j+1} from its start, now also using x0 at its end (no new model call)."""
        x0 = self._x0[-1]
        c = self._data_weight(j)
        out = self._first_order(self._last_sample, x0, j)
        if self._order(j) == 1:
            return out + 0.5 * c * (x0_new - x0)  # trapezoidal rule in x0
        lam_prev, lam, lam_next = (log_snr(self.sigma(k)) for k in (j - 1, j, j + 1))
        h = lam_next - lam
        rho_prev, rho_new = unic_weights(h, (lam_prev - lam) / h)
        return out + c * (rho_prev * self._slope(x0, self._x0[-2], j) + rho_new * (x0_new - x0))
