"""End-to-end parity with diffusers' WanPipeline on the same tiny checkpoint.

diffusers' Wan schedulers, left alone, use a slightly different sigma grid from the official code (4th
decimal), so both are forced to the official sequence through ``set_timesteps(sigmas=...)``; with the same
seed, weights, prompt and negative prompt the decoded frames must agree within 2/255.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openwan import load_pipeline
from openwan.configs import DEFAULT_NEGATIVE_PROMPT
from openwan.sampling.schedules import unipc_sigmas

STEPS, SHIFT, GUIDANCE, SEED = 6, 5.0, 5.0, 1234
SIZE = dict(width=64, height=48, frames=9)


def _official_grid(n: int) -> np.ndarray:
    # The official UniPC grid before shifting: linspace(sigma_max, 0) with sigma_max = float32(0.999).
    return np.linspace(float(np.float32(0.999)), 0.0, n + 1)[:-1]


def _force_unipc(scheduler) -> None:
    orig = scheduler.set_timesteps

    def set_timesteps(num_inference_steps=None, device=None, **_):
        orig(sigmas=_official_grid(num_inference_steps), device=device)  # diffusers applies flow_shift itself

    scheduler.set_timesteps = set_timesteps


def _force_euler(scheduler) -> None:
    orig = scheduler.set_timesteps

    def set_timesteps(num_inference_steps=None, device=None, **_):
        orig(sigmas=unipc_sigmas(num_inference_steps, SHIFT)[:-1].numpy(), device=device)
        # The official model receives int64 timesteps (sigma * 1000, truncated).
        scheduler.timesteps = scheduler.timesteps.to(torch.int64).to(scheduler.timesteps.dtype)

    scheduler.set_timesteps = set_timesteps


@pytest.mark.parametrize("solver", ["unipc", "euler"])
def test_frames_match_diffusers_wan_pipeline(tiny_diffusers, solver):
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    ref = WanPipeline.from_pretrained(tiny_diffusers, torch_dtype=torch.float32)
    ref.set_progress_bar_config(disable=True)
    if solver == "unipc":
        ref.scheduler = type(ref.scheduler).from_config(ref.scheduler.config, flow_shift=SHIFT)
        _force_unipc(ref.scheduler)
    else:
        ref.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        _force_euler(ref.scheduler)
    prompt = "a red ball falls and bounces"
    theirs = ref(
        prompt=prompt, negative_prompt=DEFAULT_NEGATIVE_PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
        width=SIZE["width"], height=SIZE["height"], num_frames=SIZE["frames"],
        generator=torch.Generator("cpu").manual_seed(SEED), output_type="np",
    ).frames[0]
    ours = load_pipeline(tiny_diffusers, device="cpu").generate(
        prompt, steps=STEPS, guidance=GUIDANCE, shift=SHIFT, seed=SEED, solver=solver, progress=False, **SIZE
    ).frames
    theirs_u8 = np.round(np.asarray(theirs, dtype=np.float64) * 255).astype(np.int16)
    assert theirs_u8.shape == ours.shape
    diff = np.abs(theirs_u8 - ours.astype(np.int16))
    assert diff.max() <= 2, f"max abs difference {diff.max()}/255"
    assert ours.std() > 1.0  # a non-trivial video, so the comparison means something
