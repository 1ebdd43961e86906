"""Common interface of the flow-matching solvers, and the multistep machinery UniPC and DPM++ share.

Convention: x_σ = (1−σ)·x0 + σ·ε, the model predicts v = ε − x0, so x0 = x_σ − σ·v. In the diffusion
notation of DPM-Solver/UniPC this is α_σ = 1−σ, with log-SNR λ = log(α/σ) = log((1−σ)/σ).
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .schedules import model_timesteps


def log_snr(sigma: float) -> float:
    """λ(σ) = log((1−σ)/σ), finite for 0 < σ < 1."""
    return math.log((1.0 - sigma) / sigma)


class FlowSolver:
    """A single-use sampler: ``step`` is called once per entry of ``timesteps``, in order.

    ``sigmas`` (float32, ``steps + 1``, last 0) are the noise levels; ``timesteps`` (int64, ``steps``) are
    what the DiT receives at each step. ``step(v, x)`` takes the velocity predicted at ``x = x_{σ_i}`` and
    returns the sample at ``σ_{i+1}``.
    """

    def __init__(self, sigmas: torch.Tensor) -> None:
        # Timesteps come from the float64 schedule; the update rules use the float32 copy, as the official
        # schedulers do.
        self.sigmas = sigmas.to(torch.float32)
        self.timesteps = model_timesteps(sigmas)
        self._index = 0

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def sigma(self, i: int) -> float:
        return float(self.sigmas[i])

    def step(self, velocity: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        if self._index >= self.steps:
            raise RuntimeError(f"this solver has already taken all {self.steps} steps; make a new one")
        if velocity.shape != sample.shape:
            raise InputError(f"velocity shape {tuple(velocity.shape)} != sample shape {tuple(sample.shape)}")
        # Half-precision inputs are integrated in float32 (like the official/diffusers schedulers) and the
        # result is cast back; float64 stays float64.
        work = torch.promote_types(sample.dtype, torch.float32)
        out = self._update(velocity.to(work), sample.to(work), self._index)
        self._index += 1
        return out.to(sample.dtype)

    def _update(self, velocity: torch.Tensor, sample: torch.Tensor, i: int) -> torch.Tensor:
        raise NotImplementedError


class MultistepSolver(FlowSolver):
    """Order-2 multistep exponential integrator on data predictions (DPM-Solver++(2M), midpoint form).

    From σ_s to σ_t with step h = λ_t − λ_s, the exact solution of the data-prediction ODE is
    x_t = (σ_t/σ_s)·x_s + σ_t·∫ e^λ x0(λ) dλ. Freezing x0 gives the first-order step; the second order
    adds the slope of x0 in λ, estimated from the previous step's x0.
    """

    def __init__(self, sigmas: torch.Tensor) -> None:
        super().__init__(sigmas)
        self._x0: list[torch.Tensor] = []  # the last two data predictions, newest last

    def _remember(self, x0: torch.Tensor) -> None:
        self._x0 = [*self._x0[-1:], x0]

    def _order(self, i: int) -> int:
        """Order of the step σ_i → σ_{i+1}."""
        # Warm up at first order; the final step to σ=0 is first order too (official lower_order_final).
        order = min(2, i + 1, self.steps - i)
        # An x0 taken at pure noise (σ=1, λ=−∞) says nothing about the slope: the official update scales
        # its difference by 1/r = 0, which is exactly a first-order step.
        if order == 2 and self.sigma(i - 1) >= 1.0:
            return 1
        return order

    def _data_weight(self, i: int) -> float:
        """c = α_t·(1 − e^{−h}) for the step σ_i → σ_{i+1}; for flow matching it is simply 1 − σ_t/σ_s.

        Written this way it stays finite at σ_s = 1 and σ_t = 0, where h is infinite.
        """
        return 1.0 - self.sigma(i + 1) / self.sigma(i)

    def _first_order(self, x: torch.Tensor, x0: torch.Tensor, i: int) -> torch.Tensor:
        """Step σ_i → σ_{i+1} with x0 held fixed: (σ_t/σ_s)·x + c·x0 (DDIM; for flows also the Euler step)."""
        return x + self._data_weight(i) * (x0 - x)

    def _slope(self, x0: torch.Tensor, x0_prev: torch.Tensor, i: int) -> torch.Tensor:
        """D1 = (x0_i − x0_{i−1}) / r with r = (λ_i − λ_{i−1}) / h: h·dx0/dλ for the step σ_i → σ_{i+1}."""
        lam_prev, lam, lam_next = (log_snr(self.sigma(j)) for j in (i - 1, i, i + 1))
        r = (lam - lam_prev) / (lam_next - lam)
        return (x0 - x0_prev) / r

    def _predict(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Step σ_i → σ_{i+1} from the remembered data predictions (newest is at σ_i)."""
        out = self._first_order(x, self._x0[-1], i)
        if self._order(i) == 2:
            out = out + 0.5 * self._data_weight(i) * self._slope(self._x0[-1], self._x0[-2], i)
        return out
