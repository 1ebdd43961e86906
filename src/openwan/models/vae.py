"""Wan-VAE: the 3D causal video autoencoder of Wan 2.1 (official ``WanVAE_`` in ``wan/modules/vae.py``).

Video [B, 3, 1+4k, H, W] in [-1, 1]  <->  latents [B, 16, 1+k, H/8, W/8].

Every temporal convolution is causal (frame t only sees frames <= t), so a video is processed in
chunks: the encoder takes frames 1, 4, 4, ... and the decoder one latent frame at a time. A
``FeatureCache`` carries the last input frames of each causal layer from one chunk to the next, which
makes the chunked result equal to a single pass over the whole video while memory stays flat in its
length. The cache is created per call and passed down explicitly; the modules hold no state.

Parameter names follow ``Wan2.1_VAE.pth`` exactly, including the positional indices of the official
``nn.Sequential`` containers (``residual.2``, ``head.0``, ``resample.1`` ...).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _activation_checkpoint

from ..configs import VAEConfig
from ..errors import InputError


class FeatureCache:
    """Streaming state of one encode/decode call: for each causal layer, its input frames that the
    next chunk still needs. A layer that has run holds an entry, possibly ``None`` (no past frames)."""

    def __init__(self) -> None:
        self._past: dict[nn.Module, Tensor | None] = {}

    def __contains__(self, layer: nn.Module) -> bool:
        return layer in self._past

    def past(self, layer: nn.Module) -> Tensor | None:
        return self._past.get(layer)

    def keep(self, layer: nn.Module, frames: Tensor | None) -> None:
        self._past[layer] = frames

    def copy(self) -> FeatureCache:
        """Shallow copy: entries are replaced by ``keep``, never mutated, so the tensors can be shared."""
        other = FeatureCache()
        other._past = dict(self._past)
        return other

    def update(self, other: FeatureCache) -> None:
        self._past.update(other._past)


def conv3d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...] = (1, 1, 1),
           padding: tuple[int, ...] = (0, 0, 0)) -> Tensor:
    """F.conv3d, except that fp32 on CPU always goes through oneDNN: PyTorch's size heuristic sends
    small inputs (the latent-resolution layers) to a native kernel that is up to 2x slower and
    allocates a large im2col buffer."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available() \
            and torch.backends.mkldnn.enabled:
        return torch.mkldnn_convolution(x, weight, bias, padding, stride, (1, 1, 1), 1)
    return F.conv3d(x, weight, bias, stride, padding)


class Conv3d(nn.Conv3d):
    def forward(self, x: Tensor) -> Tensor:
        return conv3d(x, self.weight, self.bias, self.stride, self.padding)


class CausalConv3d(Conv3d):
    """Conv3d whose time padding lies entirely before the first frame (zeros), read from the cache
    when earlier chunks exist. Spatial padding is done inside the convolution (no padded copy)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int | tuple[int, int, int],
                 padding: int | tuple[int, int, int] = 0) -> None:
        super().__init__(in_dim, out_dim, kernel_size, padding=padding)
        self.past_frames = 2 * self.padding[0]  # == kernel_t - 1
        self.padding = (0, *self.padding[1:])

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        """x: [B, C, T, H, W] new frames -> [B, C_out, T, H, W]."""
        new = x.shape[2]
        past = cache.past(self)
        if past is not None:
            x = torch.cat([past, x], dim=2)
        cache.keep(self, x[:, :, -self.past_frames:].clone())
        weight = self.weight
        missing = self.past_frames - (x.shape[2] - new)  # zero frames before the start of the video
        if missing > 0:
            if new == 1:  # a single output frame: skip the kernel taps that would only see zeros
                weight = weight[:, :, missing:]
            else:
                x = F.pad(x, (0, 0, 0, 0, missing, 0))
        return conv3d(x, weight, self.bias, self.stride, self.padding)


class RMSNorm(nn.Module):
    """Official ``RMS_norm``: L2-normalise over channels (dim 1), times sqrt(C) and a learned gain.

    ``silu`` fuses the SiLU that always follows it in the residual blocks and heads; ``inplace``
    overwrites ``x`` (only for tensors nothing else reads). In-place ops are for inference (no_grad);
    with autograd on (training) the same arithmetic runs out of place and ``inplace`` is ignored.
    """

    def __init__(self, dim: int, images: bool = False) -> None:
        super().__init__()
        # checkpoint shapes: [C, 1, 1] in the attention block (images), [C, 1, 1, 1] elsewhere
        self.gamma = nn.Parameter(torch.ones(dim, *((1,) * (2 if images else 3))))
        self.scale = dim**0.5

    def forward(self, x: Tensor, *, silu: bool = False, inplace: bool = False) -> Tensor:
        if torch.is_grad_enabled():  # training: backward needs the inputs the in-place ops overwrite
            return self._forward_autograd(x, silu)
        # square-sum beats linalg.vector_norm over dim 1 several times on CPU
        sq = torch.sum(x.square(), dim=1, keepdim=True, dtype=torch.float32)
        inv = sq.clamp_min_(1e-24).rsqrt_().to(x.dtype)  # F.normalize's eps 1e-12, squared
        y = x.mul_(inv) if inplace else x * inv
        y.mul_((self.gamma * self.scale).view(1, -1, *((1,) * (x.dim() - 2))))
        return F.silu(y, inplace=True) if silu else y

    def _forward_autograd(self, x: Tensor, silu: bool) -> Tensor:
        """The same arithmetic in the same order, out of place: autograd needs each op's input intact."""
        sq = torch.sum(x.square(), dim=1, keepdim=True, dtype=torch.float32)
        y = x * sq.clamp_min(1e-24).rsqrt().to(x.dtype)
        y = y * (self.gamma * self.scale).view(1, -1, *((1,) * (x.dim() - 2)))
        return F.silu(y) if silu else y


class ResidualBlock(nn.Module):
    """(RMS, SiLU, causal conv3) x 2 plus a 1x1x1 shortcut when the channel count changes."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        # The official Sequential; its indices are the checkpoint keys (residual.0/.2/.3/.6).
        self.residual = nn.Sequential(
            RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim), nn.SiLU(), nn.Dropout(dropout), CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = Conv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        norm1, _, conv1, norm2, _, dropout, conv2 = self.residual  # the SiLUs are fused into the norms
        h = conv1(norm1(x, silu=True), cache)
        h = conv2(dropout(norm2(h, silu=True, inplace=True)), cache)
        return h.add_(self.shortcut(x))


class AttentionBlock(nn.Module):
    """Single-head self-attention among the pixels of each frame (frames do not attend each other)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        """x: [B, C, T, H, W]; ``cache`` is unused (frames are independent) but keeps the block call uniform."""
        b, c, t, h, w = x.shape
        qkv = conv3d(self.norm(x), self.to_qkv.weight[:, :, None], self.to_qkv.bias)  # [B, 3C, T, H, W]
        qkv = qkv.permute(0, 2, 3, 4, 1).reshape(b * t, 1, h * w, 3 * c)  # one head per frame
        q, k, v = qkv.chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)  # [B*T, 1, H*W, C]
        y = F.linear(y, self.proj.weight.view(c, c), self.proj.bias)
        return x + y.view(b, t, h, w, c).permute(0, 4, 1, 2, 3)


class Resample(nn.Module):
    """Halve (``downsample*``) or double (``upsample*``) H and W; the ``*3d`` modes also halve or double T.

    Upsampling also halves the channels (official). Temporal resampling follows the official chunk
    rules: the first chunk's single frame passes through unchanged, later chunks are resampled in time.
    """

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(
                nn.Upsample(scale_factor=2.0, mode="nearest-exact"), nn.Conv2d(dim, dim // 2, 3, padding=1)
            )
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            # channels hold two output frames each: [2C] -> frames 2t, 2t+1
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = Conv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        if self.mode == "upsample3d":
            x = self._double_frames(x, cache)
        # The official runs these 2D ops on (B*T) frames; here without that reshape copy: the pad or
        # upsample sees (C, T) folded into one axis (a free view), the conv is a (1, k, k) conv3d.
        pre, conv = self.resample
        x = pre(x.flatten(1, 2)).unflatten(1, x.shape[1:3])
        x = conv3d(x, conv.weight[:, :, None], conv.bias, (1, *conv.stride), (0, *conv.padding))
        if self.mode == "downsample3d":
            x = self._halve_frames(x, cache)
        return x

    def _double_frames(self, x: Tensor, cache: FeatureCache) -> Tensor:
        if self.time_conv not in cache:
            # First chunk (official 'Rep'): its frame passes through and is not part of time_conv's past.
            cache.keep(self.time_conv, None)
            return x
        c = x.shape[1]
        x = self.time_conv(x, cache)  # [B, 2C, T, H, W]: channel halves are frames 2t and 2t+1
        return torch.stack((x[:, :c], x[:, c:]), dim=3).flatten(2, 3)  # [B, C, 2T, H, W]

    def _halve_frames(self, x: Tensor, cache: FeatureCache) -> Tensor:
        past = cache.past(self.time_conv)
        cache.keep(self.time_conv, x[:, :, -1:].clone())
        if past is None:  # first chunk: its single frame passes through
            return x
        return self.time_conv(torch.cat([past, x], dim=2))  # stride 2 over [last, new...]: 2n frames -> n


class MidBlock(nn.Sequential):
    """Residual, attention, residual at the lowest resolution (``middle.{0,1,2}``)."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__(ResidualBlock(dim, dim, dropout), AttentionBlock(dim), ResidualBlock(dim, dim, dropout))

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        for layer in self:
            x = layer(x, cache)
        return x


class Head(nn.Sequential):
    """RMS, SiLU, causal conv3 to the output channels (``head.{0,2}``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1))

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        norm, _, conv = self
        return conv(norm(x, silu=True), cache)


def _run(layers: list[nn.Module], x: Tensor, cache: FeatureCache, checkpoint: bool = False) -> Tensor:
    """Apply ``layers`` in turn; ``checkpoint`` recomputes each block's activations in backward."""
    for layer in layers:
        if checkpoint and not isinstance(layer, Conv3d):  # a lone conv has nothing worth dropping
            x = _run_checkpointed(layer, x, cache)
        else:
            x = layer(x, cache)
    return x


def _run_checkpointed(layer: nn.Module, x: Tensor, cache: FeatureCache) -> Tensor:
    """``layer(x, cache)`` under activation checkpointing. The recomputation in backward must read the
    cache as it was before this call, not as later chunks left it, so the block runs on a private copy
    of the cache (re-made for the recomputation) whose new entries are merged back afterwards."""
    before = cache.copy()

    def run(x: Tensor) -> tuple[Tensor, FeatureCache]:
        private = before.copy()
        return layer(x, private), private

    y, after = _activation_checkpoint(run, x, use_reentrant=False)
    cache.update(after)
    return y


def _run_frame_by_frame(layers: list[nn.Module], x: Tensor, cache: FeatureCache, checkpoint: bool = False) -> Tensor:
    """``_run`` one frame at a time. Exact for layers that mix frames only through the cache (causal
    convs, per-frame ops): the full-resolution end of the VAE then holds one frame of activations
    instead of a four-frame chunk, at the same speed."""
    return torch.cat([_run(layers, frame, cache, checkpoint) for frame in x.split(1, dim=2)], dim=2)


class Encoder(nn.Module):
    """Video chunk [B, 3, T, H, W] -> [B, 2z, T/4 (or 1), H/8, W/8] (mu and logvar before ``conv1``)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        scale = 1.0
        for i, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResidualBlock(d_in, d_out, cfg.dropout))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock(d_out))
                d_in = d_out
            if i < len(cfg.dim_mult) - 1:
                blocks.append(Resample(d_out, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
                scale /= 2
        self.downsamples = nn.Sequential(*blocks)
        self.middle = MidBlock(dims[-1], cfg.dropout)
        self.head = Head(dims[-1], cfg.z_dim * 2)
        # layers before the first temporal downsample run frame by frame (see _run_frame_by_frame)
        modes = [getattr(b, "mode", "") for b in blocks]
        self.frame_wise = modes.index("downsample3d") if "downsample3d" in modes else len(blocks)

    def forward(self, x: Tensor, cache: FeatureCache, checkpoint: bool = False) -> Tensor:
        blocks = list(self.downsamples)
        x = _run_frame_by_frame([self.conv1, *blocks[: self.frame_wise]], x, cache, checkpoint)
        return _run([*blocks[self.frame_wise :], self.middle, self.head], x, cache, checkpoint)


class Decoder(nn.Module):
    """Latent chunk [B, z, 1, h, w] -> video [B, 3, 1 (first chunk) or 4, 8h, 8w]."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
        temporal_upsample = cfg.temporal_downsample[::-1]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = MidBlock(dims[0], cfg.dropout)
        blocks: list[nn.Module] = []
        scale = 1.0 / 2 ** (len(cfg.dim_mult) - 2)
        for i, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
            if i > 0:
                d_in //= 2  # the upsample before this level halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResidualBlock(d_in, d_out, cfg.dropout))
                if scale in cfg.attn_scales:
                    blocks.append(AttentionBlock(d_out))
                d_in = d_out
            if i < len(cfg.dim_mult) - 1:
                blocks.append(Resample(d_out, "upsample3d" if temporal_upsample[i] else "upsample2d"))
                scale *= 2
        self.upsamples = nn.Sequential(*blocks)
        self.head = Head(dims[-1], 3)
        # layers after the last temporal upsample run frame by frame (see _run_frame_by_frame)
        modes = [getattr(b, "mode", "") for b in blocks]
        self.frame_wise = len(modes) - modes[::-1].index("upsample3d") if "upsample3d" in modes else 0

    def forward(self, x: Tensor, cache: FeatureCache, checkpoint: bool = False) -> Tensor:
        blocks = list(self.upsamples)
        x = _run([self.conv1, self.middle, *blocks[: self.frame_wise]], x, cache, checkpoint)
        return _run_frame_by_frame([*blocks[self.frame_wise :], self.head], x, cache, checkpoint)


class WanVAE(nn.Module):
    """Wan 2.1 video VAE. ``encode`` and ``decode`` work on normalised latents ((mu - mean) / std),
    the space the DiT is trained in; computation runs in the dtype of the weights (fp32 officially)."""

    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.temporal_stride = 2 ** sum(config.temporal_downsample)  # 4
        self.spatial_stride = 2 ** (len(config.dim_mult) - 1)  # 8
        z = config.z_dim
        self.encoder = Encoder(config)
        self.conv1 = Conv3d(z * 2, z * 2, 1)  # encoder features -> (mu, logvar)
        self.conv2 = Conv3d(z, z, 1)  # latent -> decoder input
        self.decoder = Decoder(config)
        # Latent statistics are not in Wan2.1_VAE.pth: non-persistent, rebuilt from the config.
        self.register_buffer("latents_mean", torch.empty(z), persistent=False)
        self.register_buffer("latents_std", torch.empty(z), persistent=False)
        self.reset_buffers()
        # Training only: recompute each block's activations in backward instead of keeping them.
        self.gradient_checkpointing = False

    def reset_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)build the latent statistics, e.g. after construction on the meta device."""
        device = device if device is not None else self.latents_mean.device
        self.latents_mean = torch.tensor(self.config.latents_mean, dtype=torch.float32, device=device)
        self.latents_std = torch.tensor(self.config.latents_std, dtype=torch.float32, device=device)

    def normalize(self, mu: Tensor) -> Tensor:
        """Raw latent mean -> the normalised latent the DiT works with (computed in fp32)."""
        mean, std = self._stats(mu)
        return ((mu.float() - mean) / std).to(mu.dtype)

    def denormalize(self, z: Tensor) -> Tensor:
        """Inverse of ``normalize``."""
        mean, std = self._stats(z)
        return (z.float() * std + mean).to(z.dtype)

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1) + (1,) * (like.dim() - 2)
        return (self.latents_mean.to(like.device, torch.float32).view(shape),
                self.latents_std.to(like.device, torch.float32).view(shape))

    @torch.no_grad()
    def encode_distribution(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """video [B, 3, 1+4k, H, W] in [-1, 1] -> raw (mu, logvar), each [B, z, 1+k, H/8, W/8], in the
        video's dtype on the VAE's device."""
        self._check_video(video)
        b, _, t, h, w = video.shape
        s, n = self.spatial_stride, self.temporal_stride
        param = self.conv1.weight
        out = torch.empty(b, 2 * self.config.z_dim, 1 + (t - 1) // n, h // s, w // s,
                          device=param.device, dtype=video.dtype)
        cache = FeatureCache()
        for i in range(out.shape[2]):
            # chunks of 1, n, n, ... frames; each yields one latent frame
            start, stop = (0, 1) if i == 0 else (1 + n * (i - 1), 1 + n * i)
            chunk = video[:, :, start:stop].to(param.device, param.dtype)
            out[:, :, i : i + 1] = self.conv1(self.encoder(chunk, cache))
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar

    def encode(self, video: Tensor) -> Tensor:
        """video [B, 3, 1+4k, H, W] in [-1, 1] -> normalised latents [B, z, 1+k, H/8, W/8] (the mean, no sampling)."""
        mu, _ = self.encode_distribution(video)
        return self.normalize(mu)

    @torch.no_grad()
    def decode(self, z: Tensor, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """Normalised latents [B, z, T', h, w] -> video [B, 3, 1+4(T'-1), 8h, 8w] clamped to [-1, 1].

        ``progress(done, total)`` is called after each latent frame. The output has ``z``'s dtype
        and lives on the VAE's device.
        """
        self._check_latents(z)
        b, _, t, h, w = z.shape
        s, n = self.spatial_stride, self.temporal_stride
        param = self.conv2.weight
        out = torch.empty(b, 3, 1 + n * (t - 1), h * s, w * s, device=param.device, dtype=z.dtype)
        cache = FeatureCache()
        for i in range(t):
            x = self.denormalize(z[:, :, i : i + 1].to(param.device)).to(param.dtype)
            frames = self.decoder(self.conv2(x), cache).clamp_(-1.0, 1.0)  # 1 frame, then n per latent
            start = 0 if i == 0 else 1 + n * (i - 1)
            out[:, :, start : start + frames.shape[2]] = frames
            del frames  # before the next chunk allocates its own
            if progress is not None:
                progress(i + 1, t)
        return out

    # ---- training -------------------------------------------------------------------------------------------------

    def reconstruct(self, video: Tensor, *, sample: bool,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Differentiable encode -> latent -> decode, for training.

        video [B, 3, 1+4k, H, W] in [-1, 1] -> (recon [B, 3, 1+4k, H, W], mu, logvar), with raw
        (unnormalised) ``mu``/``logvar`` [B, z, 1+k, H/8, W/8] as ``encode_distribution`` gives them.
        ``sample`` decodes mu + exp(logvar / 2) * noise (``generator`` on the VAE's device) instead of mu.

        It runs the same causal chunks and feature cache as ``encode_distribution``/``decode``, so what
        is trained is exactly what inference computes; gradients also flow through the cache from one
        chunk to the next. Unlike ``decode``, ``recon`` is not clamped to [-1, 1]: clamping would zero
        the gradient of every pixel that overshoots. ``gradient_checkpointing`` trades compute for memory.
        """
        self._check_video(video)
        param = self.conv1.weight
        video = video.to(param.device, param.dtype)
        n, ckpt = self.temporal_stride, self.gradient_checkpointing
        cache = FeatureCache()
        chunks = [video[:, :, :1]] + [video[:, :, i : i + n] for i in range(1, video.shape[2], n)]  # 1, n, n, ...
        moments = torch.cat([self.conv1(self.encoder(chunk, cache, ckpt)) for chunk in chunks], dim=2)
        mu, logvar = moments.chunk(2, dim=1)
        z = mu
        if sample:
            noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + torch.exp(0.5 * logvar.clamp(-30.0, 20.0)) * noise  # clamp as in kl_loss: no overflow
        cache = FeatureCache()
        frames = [self.decoder(self.conv2(z[:, :, i : i + 1]), cache, ckpt) for i in range(z.shape[2])]
        return torch.cat(frames, dim=2), mu, logvar

    @property
    def last_decoder_weight(self) -> Tensor:
        """Weight of the layer that outputs pixels (for the adaptive GAN weight)."""
        return self.decoder.head[-1].weight

    def _check_video(self, video: Tensor) -> None:
        if video.dim() != 5 or video.shape[1] != 3:
            raise InputError(f"video must be [batch, 3, frames, height, width], got shape {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        n, s = self.temporal_stride, self.spatial_stride
        if (t - 1) % n:
            lo = 1 + max(t - 1, 0) // n * n
            raise InputError(f"video has {t} frames; Wan-VAE needs 1 + {n}k frames, e.g. {lo} or {lo + n}")
        for name, size in (("height", h), ("width", w)):
            if size % s or size == 0:
                lo = size // s * s
                hint = f"{lo} or {lo + s}" if lo else f"{s}"
                raise InputError(f"video {name} {size} is not a positive multiple of {s}; use {hint}")

    def _check_latents(self, z: Tensor) -> None:
        if z.dim() != 5 or z.shape[1] != self.config.z_dim or z.shape[2] == 0:
            raise InputError(
                f"latents must be [batch, {self.config.z_dim}, frames>=1, height, width], got shape {tuple(z.shape)}"
            )


def _check_config(cfg: VAEConfig) -> None:
    if len(cfg.temporal_downsample) != len(cfg.dim_mult) - 1:
        raise InputError(
            f"VAEConfig.temporal_downsample needs one entry per downsampling step ({len(cfg.dim_mult) - 1}), "
            f"got {len(cfg.temporal_downsample)}"
        )
    if len(cfg.latents_mean) != cfg.z_dim or len(cfg.latents_std) != cfg.z_dim:
        raise InputError(f"VAEConfig latents_mean/latents_std need z_dim={cfg.z_dim} entries each")
