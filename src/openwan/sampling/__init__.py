"""Flow-matching samplers of Wan 2.1: official sigma schedules and the UniPC, DPM++ and Euler solvers."""

from __future__ import annotations

import math

from ..errors import InputError
from .base import FlowSolver
from .dpmpp import DPMPPSolver
from .euler import EulerSolver
from .schedules import dpmpp_sigmas, model_timesteps, shift_sigmas, unipc_sigmas
from .unipc import UniPCSolver

_SOLVER_CLASSES: dict[str, type[FlowSolver]] = {"unipc": UniPCSolver, "dpm++": DPMPPSolver, "euler": EulerSolver}
SOLVERS: tuple[str, ...] = tuple(_SOLVER_CLASSES)


def check_shift(shift: object) -> float:
    """The sigma shift as a float; InputError unless it is a finite number > 0."""
    if isinstance(shift, bool) or not (isinstance(shift, (int, float)) and math.isfinite(shift) and shift > 0):
        raise InputError(f"sigma shift must be a finite number > 0, got {shift!r}")
    return float(shift)


def check_guidance_interval(interval: object) -> tuple[float, float]:
    """``(low, high)`` noise levels (flow-matching sigma, 0 = clean, 1 = pure noise) between which
    classifier-free guidance applies; InputError unless ``0 <= low < high <= 1``."""
    try:
        low, high = interval  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InputError(f"guidance interval must be two sigmas (low, high), got {interval!r}") from None
    for v in (low, high):
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise InputError(f"guidance interval must be two numbers in [0, 1], got {interval!r}")
    if not 0.0 <= low < high <= 1.0:
        raise InputError(f"guidance interval needs 0 <= low < high <= 1 (sigmas), got ({low:g}, {high:g})")
    return float(low), float(high)


def make_solver(name: str, steps: int, shift: float) -> FlowSolver:
    """A fresh single-use solver; call its ``step`` once for each of its ``timesteps``."""
    if name not in _SOLVER_CLASSES:
        raise InputError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"sampling steps must be an integer >= 1, got {steps!r}")
    return _SOLVER_CLASSES[name](steps, check_shift(shift))


__all__ = [
    "SOLVERS",
    "DPMPPSolver",
    "EulerSolver",
    "FlowSolver",
    "UniPCSolver",
    "check_guidance_interval",
    "check_shift",
    "dpmpp_sigmas",
    "make_solver",
    "model_timesteps",
    "shift_sigmas",
    "unipc_sigmas",
]
