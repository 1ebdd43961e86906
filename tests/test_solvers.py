"""Flow-matching solvers: official schedules, parity with diffusers' schedulers, convergence on an exact flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openwan.errors import InputError
from openwan.sampling import SOLVERS, FlowSolver, dpmpp_sigmas, make_solver, shift_sigmas, unipc_sigmas

CASES = [(1, 1.0), (2, 3.0), (10, 5.0), (30, 8.0), (40, 3.0), (50, 5.0), (50, 16.0)]

# Shipped Wan2.1-T2V-1.3B-Diffusers scheduler/scheduler_config.json (flow_shift varies per test).
WAN_DIFFUSERS_UNIPC = dict(
    num_train_timesteps=1000, solver_order=2, prediction_type="flow_prediction", use_flow_sigmas=True,
    predict_x0=True, solver_type="bh2", lower_order_final=True, final_sigmas_type="zero", disable_corrector=[],
    timestep_spacing="linspace", thresholding=False, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
)


def smooth_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A nonlinear stand-in for the DiT, so that multistep history and corrector both matter."""
    return torch.tanh(x) * (0.5 + sigma) - 0.3 * x + 0.1


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("steps,shift", CASES)
def test_unipc_schedule_matches_official_formula(steps: int, shift: float) -> None:
    # FlowUniPCMultistepScheduler: sigma_max = float32(1 - 1/1000) read back as a Python float,
    # linspace(sigma_max, 0, steps+1)[:-1] in float64, shifted, timesteps = int64(sigma * 1000), final 0.
    sigma_max = float(np.float32(0.999))
    base = np.linspace(sigma_max, 0.0, steps + 1)[:-1]
    ref = shift * base / (1 + (shift - 1) * base)
    solver = make_solver("unipc", steps, shift)
    assert torch.equal(solver.sigmas, torch.from_numpy(np.append(ref, 0.0).astype(np.float32)))
    assert torch.equal(solver.timesteps, torch.from_numpy((ref * 1000).astype(np.int64)))
    assert torch.equal(unipc_sigmas(steps, shift), torch.from_numpy(np.append(ref, 0.0)))
    assert solver.sigmas.dtype == torch.float32 and solver.timesteps.dtype == torch.int64
    assert len(solver.timesteps) == steps and solver.sigmas[-1] == 0


@pytest.mark.parametrize("steps,shift", CASES)
def test_dpmpp_schedule_matches_official_formula(steps: int, shift: float) -> None:
    # get_sampling_sigmas: linspace(1, 0, steps+1)[:steps], shifted; the scheduler (shift=1) appends 0.
    base = np.linspace(1.0, 0.0, steps + 1)[:steps]
    ref = shift * base / (1 + (shift - 1) * base)
    solver = make_solver("dpm++", steps, shift)
    assert torch.equal(solver.sigmas, torch.from_numpy(np.append(ref, 0.0).astype(np.float32)))
    assert torch.equal(solver.timesteps, torch.from_numpy((ref * 1000).astype(np.int64)))
    assert torch.equal(dpmpp_sigmas(steps, shift), torch.from_numpy(np.append(ref, 0.0)))
    assert solver.timesteps[0] == 1000 and solver.sigmas[0] == 1.0


def test_euler_uses_the_unipc_schedule() -> None:
    euler, unipc = make_solver("euler", 20, 5.0), make_solver("unipc", 20, 5.0)
    assert torch.equal(euler.sigmas, unipc.sigmas) and torch.equal(euler.timesteps, unipc.timesteps)


def test_timesteps_use_float32_sigma_max_and_truncate() -> None:
    # Official values (checked against FlowUniPCMultistepScheduler / FlowDPMSolverMultistepScheduler). With 9
    # steps and shift 1, starting the grid at exactly 0.999 instead of float32(0.999) would give 665, 554, ...
    assert make_solver("unipc", 9, 1.0).timesteps.tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111]
    # Truncation, not rounding: σ = 0.76893... -> 768 and σ = 0.35689... -> 356 (rounding: 769, 357).
    assert make_solver("unipc", 10, 5.0).timesteps.tolist() == [999, 978, 952, 920, 882, 833, 768, 681, 555, 356]
    assert make_solver("dpm++", 10, 5.0).timesteps.tolist() == [1000, 978, 952, 921, 882, 833, 769, 681, 555, 357]


def test_shift_sigmas() -> None:
    sigmas = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(shift_sigmas(sigmas, 3.0), torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64))
    assert torch.equal(shift_sigmas(sigmas, 1.0), sigmas)


# ---------------------------------------------------------------- diffusers parity


def run(solver: FlowSolver, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for i in range(solver.steps):
        x = solver.step(smooth_velocity(x, float(solver.sigmas[i])), x)
        out.append(x)
    return out


def run_diffusers(scheduler, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for i, t in enumerate(scheduler.timesteps):
        x = scheduler.step(smooth_velocity(x, float(scheduler.sigmas[i])), t, x, return_dict=False)[0]
        out.append(x)
    return out


def assert_trajectories_close(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-6, atol=5e-6)


def latent(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 4, 3, 6, 5, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps,shift", [(1, 3.0), (2, 3.0), (10, 5.0), (50, 3.0), (40, 16.0)])
def test_unipc_matches_diffusers(steps: int, shift: float) -> None:
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.UniPCMultistepScheduler(**WAN_DIFFUSERS_UNIPC, flow_shift=shift)
    # diffusers applies flow_shift to passed sigmas and appends the final 0 itself: pass the unshifted
    # official base grid (starting at float32(0.999) < 1, so its "sigma ~ 1" nudge does not fire).
    scheduler.set_timesteps(sigmas=np.linspace(float(np.float32(0.999)), 0.0, steps + 1)[:-1])
    solver = make_solver("unipc", steps, shift)
    assert torch.equal(scheduler.sigmas, solver.sigmas)
    assert torch.equal(scheduler.timesteps, solver.timesteps)
    assert_trajectories_close(run(solver, latent()), run_diffusers(scheduler, latent()))


@pytest.mark.parametrize("steps,shift", [(1, 5.0), (10, 5.0), (50, 3.0)])
def test_euler_matches_diffusers(steps: int, shift: float) -> None:
    diffusers = pytest.importorskip("diffusers")
    solver = make_solver("euler", steps, shift)
    # Pass our already-shifted sigmas with shift=1: diffusers shifts in float32, which can differ by an ulp.
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    scheduler.set_timesteps(sigmas=unipc_sigmas(steps, shift)[:-1].numpy())
    assert torch.equal(scheduler.sigmas, solver.sigmas)
    # diffusers keeps float timesteps σ·1000; the official ones are those truncated.
    assert torch.equal(scheduler.timesteps.to(torch.int64), solver.timesteps)
    assert_trajectories_close(run(solver, latent()), run_diffusers(scheduler, latent()))


@pytest.mark.parametrize("steps,shift", [(1, 5.0), (2, 5.0), (10, 5.0), (50, 3.0)])
def test_dpmpp_matches_diffusers(steps: int, shift: float) -> None:
    diffusers = pytest.importorskip("diffusers")
    # DPMSolverMultistepScheduler cannot take custom sigmas and its flow grid is the UniPC one, so build it
    # with the official settings and install the official DPM++ schedule by hand.
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, solver_order=2, prediction_type="flow_prediction", use_flow_sigmas=True,
        flow_shift=shift, algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=True,
        euler_at_final=False, final_sigmas_type="zero",
    )
    scheduler.set_timesteps(steps)
    solver = make_solver("dpm++", steps, shift)
    scheduler.sigmas, scheduler.timesteps = solver.sigmas.clone(), solver.timesteps.clone()
    assert_trajectories_close(run(solver, latent()), run_diffusers(scheduler, latent()))


# ---------------------------------------------------------------- behaviour


def test_step_keeps_dtype_and_counts_steps() -> None:
    solver = make_solver("unipc", 3, 5.0)
    x = latent().to(torch.bfloat16)
    for _ in range(3):
        x = solver.step(torch.zeros_like(x), x)
        assert x.dtype == torch.bfloat16
    with pytest.raises(RuntimeError, match="already taken all 3 steps"):
        solver.step(torch.zeros_like(x), x)


@pytest.mark.parametrize("name", SOLVERS)
def test_exact_velocity_of_a_point_mass_lands_on_it(name: str) -> None:
    # Data = a single point x0: v = (x - x0)/σ exactly and every solver must end on x0.
    x0 = torch.linspace(-2, 2, 24, dtype=torch.float64).reshape(2, 3, 4)
    solver = make_solver(name, 7, 5.0)
    x = 0.3 * x0 + torch.ones_like(x0)
    for i in range(solver.steps):
        x = solver.step((x - x0) / float(solver.sigmas[i]), x)
    torch.testing.assert_close(x, x0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", SOLVERS)
def test_solvers_give_different_paths(name: str) -> None:
    # Guard against a solver silently falling back to another: trajectories must differ.
    others = [n for n in SOLVERS if n != name]
    mine = run(make_solver(name, 10, 1.0), latent())[-1]
    for other in others:
        assert not torch.allclose(mine, run(make_solver(other, 10, 1.0), latent())[-1], atol=1e-4)


# ---------------------------------------------------------------- convergence on an exact Gaussian flow

# Data spreads of order 1 keep 8..64 steps in the asymptotic regime (a narrow spread s puts the interesting
# dynamics at σ ~ s, below the last nonzero σ = 1/steps).
MU = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
STD = torch.tensor([0.8, 1.0, 1.5], dtype=torch.float64)


def gaussian_flow_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    # x0 ~ N(μ, s²), ε ~ N(0, 1), x = (1−σ)x0 + σε: v = E[ε − x0 | x] = −μ + (σ − (1−σ)s²)/V · (x − (1−σ)μ).
    var = (1 - sigma) ** 2 * STD**2 + sigma**2
    return -MU + (sigma - (1 - sigma) * STD**2) / var * (x - (1 - sigma) * MU)


def integration_error(name: str, steps: int) -> float:
    solver = make_solver(name, steps, 1.0)
    sigma0 = float(solver.sigmas[0])
    z = torch.randn(256, MU.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # The probability-flow ODE of a Gaussian keeps the standardized coordinate z fixed, so the exact endpoint
    # of x = m(σ0) + sqrt(V(σ0))·z is μ + s·z.
    x = (1 - sigma0) * MU + ((1 - sigma0) ** 2 * STD**2 + sigma0**2).sqrt() * z
    for i in range(solver.steps):
        x = solver.step(gaussian_flow_velocity(x, float(solver.sigmas[i])), x)
    return (x - (MU + STD * z)).abs().max().item()


# Measured: UniPC 1.96, DPM++ 1.84, Euler 0.97. DPM++ gets a lower bound of 1.7: on linear-σ grids the
# last steps have log-SNR length log(k/(k-1)) whatever the step count, which costs 2M a log factor
# (error ~ log(N)/N², local slopes creep up towards 2 only slowly); the UniC corrector removes it.
@pytest.mark.parametrize("name,low,high", [("unipc", 1.8, 3.0), ("dpm++", 1.7, 3.0), ("euler", 0.8, 1.3)])
def test_convergence_order(name: str, low: float, high: float) -> None:
    steps = np.array([8, 16, 32, 64])
    errors = np.array([integration_error(name, int(n)) for n in steps])
    assert np.all(np.diff(errors) < 0), errors
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert low <= slope <= high, (slope, errors)


def test_unipc_corrector_beats_dpmpp_predictor() -> None:
    # Same predictor; the corrector should only make it more accurate.
    assert integration_error("unipc", 64) < 0.5 * integration_error("dpm++", 64)


# ---------------------------------------------------------------- input validation


def test_make_solver_rejects_bad_input() -> None:
    with pytest.raises(InputError, match="unipc, dpm\\+\\+, euler"):
        make_solver("ddim", 10, 5.0)
    for steps in (0, -3, 2.5, True):
        with pytest.raises(InputError, match="steps"):
            make_solver("unipc", steps, 5.0)
    for shift in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="shift"):
            make_solver("euler", 10, shift)
    with pytest.raises(InputError, match="shape"):
        make_solver("euler", 2, 1.0).step(torch.zeros(2), torch.zeros(3))


def test_cli_solver_choices_are_the_solvers() -> None:
    # the CLI spells the list out (argument parsing does not import torch); it must not drift from SOLVERS
    from openwan.cli import SOLVER_CHOICES

    assert SOLVER_CHOICES == SOLVERS
