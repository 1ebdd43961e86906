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
    "check_shift",
    "dpmpp_sigmas",
    "make_solver",
    "model_timesteps",
    "shift_sigmas",
    "unipc_sigmas",
]
