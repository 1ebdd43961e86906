"""The Wan-VAE training objective: what one generator step and one discriminator step compute.

Generator (the VAE): l1 * L1 + l2 * MSE + perceptual * LPIPS + kl * KL, plus, once ``step >= gan_start_step``,
gan * w * hinge_g with w the adaptive weight (or 1). Discriminator: the hinge loss on real clips
against the (detached) reconstructions. The training loop owns optimizers, schedules and
checkpoints; it calls, per step::

    out = objective.generator_step(video, step)
    out.loss.backward(); vae_optimizer.step()
    d_loss, d_logs = objective.discriminator_step(video, out.recon, step)
    if d_loss is not None:
        d_loss.backward(); disc_optimizer.step()

The generator step gives the discriminator no gradient and the discriminator step gives the VAE none,
so the two optimizers (or one over ``objective.parameters()``) each move only their own model.
Checkpoint ``objective.vae`` and ``objective.discriminator``; the frozen LPIPS network is a submodule
only so that ``.to()`` moves it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import InputError
from ..models.discriminator import PatchDiscriminator3D
from ..models.image_vae import ImageVAE
from ..models.vae import WanVAE
from .vae_losses import (
    PerceptualLoss,
    adaptive_gan_weight,
    hinge_d_loss,
    hinge_g_loss,
    kl_loss,
    l1_loss,
    mask_weights,
    mse_loss,
)


@dataclass
class VAELossConfig:
    """Loss weights and GAN settings of VAE training (the ``[vae.loss]`` table of a training config)."""

    l1: float = 1.0
    l2: float = 0.0  # mean squared error: its gradient grows with the error, so small objects the VAE
    # smears (few pixels, large errors) weigh more than under L1; it is also what PSNR measures
    kl: float = 1e-6  # KL is summed over latent elements, averaged over the batch (see vae_losses.kl_loss)
    perceptual: float = 0.0  # LPIPS-VGG; > 0 needs weights (perceptual_weights or the default places)
    perceptual_weights: str | None = None  # file or folder, see PerceptualLoss.from_pretrained
    gan: float = 0.0  # 0: no discriminator at all
    gan_start_step: int = 0  # the GAN terms (both steps) start at this step
    adaptive_gan_weight: bool = True  # VQGAN's gradient-norm balance at the decoder's last layer
    disc_base: int = 32
    disc_layers: int = 3
    sample_posterior: bool = True  # decode z ~ N(mu, exp(logvar)) (True) or mu
    # L1/L2 weight of the pixels a manifest's mask marks (1 = unweighted). A small subject on a textured
    # background is a few percent of the pixels: unweighted, the VAE spends its capacity on the texture
    # and blurs the subject's outline. mask_dilation widens the weighted region by that many pixels.
    mask_weight: float = 1.0
    mask_dilation: int = 0

    def __post_init__(self) -> None:
        for name in ("l1", "l2", "kl", "perceptual", "gan"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise InputError(f"VAE loss weight {name} must be a number >= 0, got {value!r}")
        if self.l1 == 0 and self.l2 == 0 and self.perceptual == 0:
            raise InputError("VAE loss needs a reconstruction term: l1, l2 or perceptual must be > 0")
        if not isinstance(self.mask_weight, (int, float)) or not math.isfinite(self.mask_weight) \
                or self.mask_weight <= 0:
            raise InputError("VAE loss mask_weight must be a finite number > 0 (1 = unweighted), "
                             f"got {self.mask_weight!r}")
        if not isinstance(self.mask_dilation, int) or isinstance(self.mask_dilation, bool) or self.mask_dilation < 0:
            raise InputError("VAE loss mask_dilation must be a whole number of pixels >= 0, "
                             f"got {self.mask_dilation!r}")
        if self.gan_start_step < 0:
            raise InputError(f"VAE loss gan_start_step must be >= 0, got {self.gan_start_step}")
        if self.gan > 0 and (self.disc_base < 1 or self.disc_layers < 1):
            raise InputError("VAE loss disc_base and disc_layers must be >= 1, "
                             f"got {self.disc_base}, {self.disc_layers}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAELossConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown VAE loss settings {unknown}; known: {sorted(known)}")
        return cls(**d)


class GeneratorStep(NamedTuple):
    loss: Tensor  # to backpropagate into the VAE
    logs: dict[str, float]
    recon: Tensor  # detached reconstruction [B, 3, F, H, W], for discriminator_step


class VAEObjective(nn.Module):
    """Losses of Wan-VAE training around ``vae`` (a ``WanVAE``, or an ``ImageVAE`` for the image stage)
    and, when ``config.gan > 0``, a ``PatchDiscriminator3D``.

    Inputs are always clips [B, 3, F, H, W] in [-1, 1]; an ``ImageVAE`` takes F = 1.
    """

    def __init__(self, vae: WanVAE | ImageVAE, config: VAELossConfig | None = None) -> None:
        super().__init__()
        if not isinstance(vae, (WanVAE, ImageVAE)):
            raise InputError(f"VAEObjective trains a WanVAE or an ImageVAE, got {type(vae).__name__}")
        config = config if config is not None else VAELossConfig()
        self.config = config
        self.vae = vae
        self.discriminator = (PatchDiscriminator3D(3, config.disc_base, config.disc_layers)
                              if config.gan > 0 else None)
        self.perceptual = (PerceptualLoss.from_pretrained(config.perceptual_weights)
                           if config.perceptual > 0 else None)

    def gan_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.gan_start_step

    @property
    def reads_masks(self) -> bool:
        """Whether generator_step weighs its pixel losses by a subject mask."""
        return self.config.mask_weight != 1.0

    def generator_step(self, video: Tensor, step: int, generator: torch.Generator | None = None,
                       mask: Tensor | None = None) -> GeneratorStep:
        """VAE loss on ``video``; ``generator`` draws the posterior sample (on the VAE's device). With
        ``config.mask_weight != 1`` the subject ``mask`` [B, 1, F, H, W] weighs the L1 and L2 terms (the
        logged ``l1``/``l2`` stay the plain means, comparable with unweighted runs)."""
        cfg = self.config
        if self.reads_masks and mask is None:
            raise InputError("VAE loss mask_weight is set, so generator_step needs the clips' mask")
        recon, mu, logvar = self._reconstruct(video, generator)
        video = video.to(recon.device, recon.dtype)
        weight = mask_weights(mask.to(recon.device), cfg.mask_weight, cfg.mask_dilation) if self.reads_masks \
            else None
        l1 = l1_loss(recon, video, weight)
        rec = cfg.l1 * l1  # the reconstruction terms, which the adaptive GAN weight balances against
        logs = {"l1": l1.item() if weight is None else l1_loss(recon.detach(), video).item()}
        if cfg.l2 > 0:
            l2 = mse_loss(recon, video, weight)
            rec = rec + cfg.l2 * l2
            logs["l2"] = l2.item() if weight is None else mse_loss(recon.detach(), video).item()
        if self.perceptual is not None:
            perceptual = self.perceptual(recon, video)
            rec = rec + cfg.perceptual * perceptual
            logs["perceptual"] = perceptual.item()
        kl = kl_loss(mu, logvar)
        loss = rec + cfg.kl * kl
        logs["kl"] = kl.item()
        logs["logvar"] = logvar.detach().float().mean().item()  # drifts down as the posterior sharpens
        if self.gan_active(step):
            g = hinge_g_loss(self._frozen_discriminator(recon))
            # the balance needs gradients; without them (evaluation under no_grad) the plain weight
            adaptive = cfg.adaptive_gan_weight and torch.is_grad_enabled()
            weight = adaptive_gan_weight(rec, g, self.vae.last_decoder_weight) if adaptive else g.new_ones(())
            loss = loss + cfg.gan * weight * g
            logs["g_loss"] = g.item()
            logs["gan_weight"] = weight.item()
        logs["loss"] = loss.item()
        return GeneratorStep(loss, logs, recon.detach())

    def discriminator_step(self, video: Tensor, recon: Tensor, step: int) -> tuple[Tensor | None, dict[str, float]]:
        """Hinge loss of the discriminator on real ``video`` vs ``recon`` (detached here in any case);
        ``(None, {})`` before ``gan_start_step`` or without a GAN, at no cost."""
        if not self.gan_active(step):
            return None, {}
        if recon.shape != video.shape:
            raise InputError(f"reconstruction {tuple(recon.shape)} and video {tuple(video.shape)} differ in shape")
        assert self.discriminator is not None
        real = video.to(recon.device, recon.dtype)
        # one pass over real and fake: GroupNorm is per sample, so this equals two passes
        logits = self.discriminator(torch.cat([real, recon.detach()]))
        logits_real, logits_fake = logits.chunk(2)
        loss = hinge_d_loss(logits_real, logits_fake)
        return loss, {"d_loss": loss.item(), "logits_real": logits_real.mean().item(),
                      "logits_fake": logits_fake.mean().item()}

    def _reconstruct(self, video: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        if video.dim() != 5 or video.shape[1] != 3:
            raise InputError(f"VAE training input must be [batch, 3, frames, height, width], got {tuple(video.shape)}")
        sample = self.config.sample_posterior
        if isinstance(self.vae, ImageVAE):
            if video.shape[2] != 1:
                raise InputError(f"the image VAE trains on single frames; got clips of {video.shape[2]} frames")
            param = self.vae.conv1.weight
            recon, mu, logvar = self.vae.reconstruct(video[:, :, 0].to(param.device, param.dtype),
                                                     sample=sample, generator=generator)
            return recon.unsqueeze(2), mu, logvar
        return self.vae.reconstruct(video, sample=sample, generator=generator)

    def _frozen_discriminator(self, x: Tensor) -> Tensor:
        """Discriminator logits whose gradient reaches ``x`` but not the discriminator's parameters."""
        assert self.discriminator is not None
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (x,))
