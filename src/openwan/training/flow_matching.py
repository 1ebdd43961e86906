"""Rectified-flow training objective of Wan 2.1 (report §4.3).

x_σ = (1 − σ)·x₀ + σ·ε moves in a straight line from the data x₀ (σ = 0) to Gaussian noise ε (σ = 1);
the DiT predicts its velocity v = dx_σ/dσ = ε − x₀ at timestep t = 1000·σ, trained with MSE. This is
the convention of the samplers in :mod:`openwan.sampling` (x ← x + (σ_next − σ)·v), so a trained
model plugs straight into UniPC / DPM++ / Euler.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..configs import NUM_TRAIN_TIMESTEPS
from ..errors import InputError
from ..sampling import shift_sigmas
from .config import FlowConfig


def sample_sigmas(n: int, cfg: FlowConfig, generator: torch.Generator) -> torch.Tensor:
    """[n] noise levels σ in (0, 1), float32: uniform or logit-normal (σ = sigmoid(N(m, s²))), then shifted."""
    if cfg.timesteps == "uniform":
        # Stratified: one draw per 1/n slice, so a small batch still covers all noise levels.
        u = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=generator, dtype=torch.float64)) / n
        sigma = u[torch.randperm(n, generator=generator)]
    else:
        sigma = torch.sigmoid(torch.randn(n, generator=generator, dtype=torch.float64) * cfg.logit_std + cfg.logit_mean)
    sigma = sigma.clamp(1e-5, 1 - 1e-5)
    return shift_sigmas(sigma, cfg.shift).float() if cfg.shift != 1.0 else sigma.float()


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x0, noise [B, C, F, H, W], sigma [B] -> (x_σ, velocity target ε − x₀)."""
    s = sigma.to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return (1 - s) * x0 + s * noise, noise - x0


def model_timesteps(sigma: torch.Tensor) -> torch.Tensor:
    """σ [B] -> DiT timesteps in [0, 1000] (float: training sees continuous t, sampling its rounding)."""
    return sigma * NUM_TRAIN_TIMESTEPS


def flow_matching_loss(prediction: torch.Tensor, target: torch.Tensor,
                       weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared velocity error, in fp32; with ``weight`` [B, 1, F, H, W] (broadcast over channels) the
    weighted mean sum(w·e²) / sum(w)."""
    if weight is None:
        return F.mse_loss(prediction.float(), target.float())
    err = (prediction.float() - target.float()).square()
    w = weight.float().expand_as(err)
    return (err * w).sum() / w.sum()


def latent_mask(mask: torch.Tensor, temporal: int, spatial: int) -> torch.Tensor:
    """Pixel mask [B, 1, F, H, W] -> the latent grid of a causal VAE [B, 1, 1 + (F-1)/temporal, H/s, W/s]:
    each latent cell takes the maximum over the pixels it encodes (the first latent frame encodes frame 0
    alone, each later one ``temporal`` frames), so a subject touching a cell counts in full."""
    b, c, f, h, w = mask.shape
    if (f - 1) % temporal or h % spatial or w % spatial:
        raise InputError(f"mask of {f} frames at {w}x{h} does not fit the VAE's {temporal}x{spatial}x{spatial} "
                         f"grid (frames must be {temporal}n+1, sides multiples of {spatial})")
    first = mask[:, :, :1]
    rest = mask[:, :, 1:].reshape(b, c, (f - 1) // temporal, temporal, h, w).amax(dim=3)
    grid = torch.cat([first, rest], dim=2)
    return F.max_pool3d(grid, kernel_size=(1, spatial, spatial))
