"""The 2D image VAE of Wan-VAE's first training stage (Wan 2.1 report §3).

"We first train a 2D image VAE with the same structure, then inflate it into the 3D causal Wan-VAE."
``ImageVAE`` is that model: Wan-VAE's channel plan, blocks, RMS norms, attention and spatial
resampling, with 2D convolutions and no temporal layers. It takes images [B, 3, H, W].

Design choice: a separate 2D model rather than the 3D model fed single frames. Both compute the same
function (a causal 3D conv on a lone frame only uses the last temporal slice of its kernel), but the
separate model holds 1/3 of the conv parameters and no ``time_conv`` layers, so the image stage's
optimizer state, weight decay and checkpoints cover exactly what it trains, and its state dict is a
real image VAE. Parameter names equal Wan-VAE's minus the temporal layers, which makes inflation
(``openwan.training.vae_inflate``) a key-by-key copy into the last temporal slice.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..configs import VAEConfig
from ..errors import InputError
from .vae import AttentionBlock, RMSNorm, _check_config


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` run as ``vae.conv3d`` runs the 3D model's convolutions (oneDNN for fp32 on CPU):
    PyTorch's own choice of kernel differs between 2D and 3D, which left the image model and its
    inflation ~1e-5 apart after 30 layers instead of equal."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available() \
                and torch.backends.mkldnn.enabled:
            return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation,
                                            self.groups)
        return super().forward(x)


class ResidualBlock2d(nn.Module):
    """2D ``ResidualBlock``: (RMS, SiLU, conv3x3) x 2 plus a 1x1 shortcut when the channel count changes."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        # same Sequential indices as the 3D block, so the keys match (residual.0/.2/.3/.6)
        self.residual = nn.Sequential(
            RMSNorm(in_dim), nn.SiLU(), Conv2d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim), nn.SiLU(), nn.Dropout(dropout), Conv2d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = Conv2d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        norm1, _, conv1, norm2, _, dropout, conv2 = self.residual  # SiLUs fused into the norms, as in 3D
        h = conv2(dropout(norm2(conv1(norm1(x, silu=True)), silu=True)))
        return h + self.shortcut(x)


class AttentionBlock2d(AttentionBlock):
    """The 3D block's per-frame attention (same parameters) applied to images [B, C, H, W]."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x.unsqueeze(2)).squeeze(2)


class Resample2d(nn.Module):
    """Spatial half of ``Resample``. ``mode`` keeps the 3D name (``downsample3d`` ...) so inflation knows
    where the temporal layers go; in 2D the ``*3d`` modes resample space only, like the 3D model's first frame."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="nearest-exact"), Conv2d(dim, dim // 2, 3, padding=1)
            )
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), Conv2d(dim, dim, 3, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        return self.resample(x)


class Head2d(nn.Sequential):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(RMSNorm(in_dim), nn.SiLU(), Conv2d(in_dim, out_dim, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        norm, _, conv = self
        return conv(norm(x, silu=True))


class ImageEncoder(nn.Module):
    """Image [B, 3, H, W] -> [B, 2z, H/8, W/8]; the block list mirrors ``vae.Encoder`` index for index."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = Conv2d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        scale = 1.0
        for i, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock2d(d_in, d_out, cfg.dropout))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock2d(d_out))
                d_in = d_out
            if i < len(cfg.dim_mult) - 1:
                blocks.append(Resample2d(d_out, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
                scale /= 2
        self.downsamples = nn.Sequential(*blocks)
        self.middle = nn.Sequential(ResidualBlock2d(dims[-1], dims[-1], cfg.dropout), AttentionBlock2d(dims[-1]),
                                    ResidualBlock2d(dims[-1], dims[-1], cfg.dropout))
        self.head = Head2d(dims[-1], cfg.z_dim * 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.middle(self.downsamples(self.conv1(x))))


class ImageDecoder(nn.Module):
    """[B, z, h, w] -> image [B, 3, 8h, 8w]; the block list mirrors ``vae.Decoder`` index for index."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal_upsample = cfg.temporal_downsample[::-1]
        self.conv1 = Conv2d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock2d(dims[0], dims[0], cfg.dropout), AttentionBlock2d(dims[0]),
                                    ResidualBlock2d(dims[0], dims[0], cfg.dropout))
        blocks: list[nn.Module] = []
        scale = 1.0 / 2 ** (len(cfg.dim_mult) - 2)
        for i, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
            if i > 0:
                d_in //= 2  # the upsample before this level halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock2d(d_in, d_out, cfg.dropout))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock2d(d_out))
                d_in = d_out
            if i < len(cfg.dim_mult) - 1:
                blocks.append(Resample2d(d_out, "upsample3d" if temporal_upsample[i] else "upsample2d"))
                scale *= 2
        self.upsamples = nn.Sequential(*blocks)
        self.head = Head2d(dims[-1], 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.upsamples(self.middle(self.conv1(x))))


class ImageVAE(nn.Module):
    """2D Wan-VAE for the image training stage: images [B, 3, H, W] in [-1, 1] <-> latents [B, z, H/8, W/8].

    Built with a training initialisation (``reset_parameters``); ``inflate_image_vae`` turns it into a
    ``WanVAE`` whose single-frame output is this model's output.
    """

    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.spatial_stride = 2 ** (len(config.dim_mult) - 1)
        z = config.z_dim
        self.encoder = ImageEncoder(config)
        self.conv1 = Conv2d(z * 2, z * 2, 1)
        self.conv2 = Conv2d(z, z, 1)
        self.decoder = ImageDecoder(config)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He-normal conv weights and zero biases. PyTorch's default conv init (uniform, gain 1/sqrt(3),
        random biases) shrinks the image's share of the activations layer by layer, so that after 30-odd
        layers the output barely depends on the input; small models then spent hundreds of steps near
        a constant output, and with this init trained markedly faster (a few dB at equal steps)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.gamma)

    def encode_distribution(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images [B, 3, H, W] -> raw (mu, logvar), each [B, z, H/8, W/8]; differentiable."""
        self._check_images(images)
        return self.conv1(self.encoder(images)).chunk(2, dim=1)

    def decode(self, z: Tensor) -> Tensor:
        """RAW latents (not normalised, unlike ``WanVAE.decode``) [B, z, h, w] -> images [B, 3, 8h, 8w],
        not clamped; differentiable."""
        if z.dim() != 4 or z.shape[1] != self.config.z_dim:
            raise InputError(f"latents must be [batch, {self.config.z_dim}, height, width], got shape {tuple(z.shape)}")
        return self.decoder(self.conv2(z))

    def reconstruct(self, images: Tensor, *, sample: bool,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """images [B, 3, H, W] -> (recon, mu, logvar); the 2D counterpart of ``WanVAE.reconstruct``."""
        mu, logvar = self.encode_distribution(images)
        z = mu
        if sample:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise
        return self.decode(z), mu, logvar

    @property
    def last_decoder_weight(self) -> Tensor:
        """Weight of the layer that outputs pixels (for the adaptive GAN weight)."""
        return self.decoder.head[-1].weight

    def _check_images(self, images: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"images must be [batch, 3, height, width], got shape {tuple(images.shape)}")
        s = self.spatial_stride
        for name, size in (("height", images.shape[2]), ("width", images.shape[3])):
            if size % s or size == 0:
                raise InputError(f"image {name} {size} is not a positive multiple of {s}")
