"""Wan 2.1 diffusion transformer (official class ``WanModel``).

Parameter names match the official checkpoints exactly, so released weights load without renaming.

Precision: cast the model with ``model.to(torch.bfloat16)`` (or fp16) to run the big matmuls and
attention in that dtype. Like the official code (which runs under bf16 autocast), these parts stay
in fp32 whatever the parameter dtype: the residual stream, every LayerNorm and q/k RMSNorm
statistic, the timestep embedding and projection, the adaLN modulation arithmetic and the output
head. No autocast is needed or expected.

Shapes: B batch, C channels, (F, H, W) latent grid, (f, h, w) = grid / patch, L = f·h·w tokens,
D = dim, T = text_len (512) text tokens, I image tokens (257, or 514 for FLF2V).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..configs import DiTConfig
from ..errors import InputError
from .attention import Attention, attention
from .rope import apply_rope, rope_tables

MODEL_TYPES = ("t2v", "i2v", "flf2v")


class FP32Linear(nn.Linear):
    """Linear layer evaluated in fp32 whatever its parameter dtype (official fp32-autocast regions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.float(), self.weight.float(), self.bias.float())


class FP32LayerNorm(nn.LayerNorm):
    """Affine LayerNorm computed in fp32 whatever its parameter dtype; returns the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight.float(), self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim in fp32, times a learned gain; returns the input's dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32, round to x's dtype, then apply the gain: the official order of operations.
        x32 = x.float()
        normed = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return normed * self.weight.to(x.dtype)


def _layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free LayerNorm in fp32 (official norm1, norm2 and head.norm)."""
    return F.layer_norm(x.float(), x.shape[-1:], eps=eps)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """adaLN: LayerNorm(x)·(1 + scale) + shift, in fp32.  x [B, L, D], shift/scale [B, 1, D]."""
    return torch.addcmul(shift, _layer_norm(x, eps), 1 + scale)


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[B] timesteps -> [B, dim] float64 cat[cos, sin](t · 10000^(-i/(dim/2))), as the official code."""
    half = dim // 2
    # MPS has no float64: compute there on the CPU (a [B] tensor), everywhere else in place.
    src = t if t.device.type != "mps" else t.cpu()
    pos = src.to(torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=pos.device) / half)
    args = torch.outer(pos, freqs)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1).to(t.device)


class SelfAttention(nn.Module):
    """Multi-head self-attention with q/k RMSNorm over all heads and 3D RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.attn = Attention()  # a module so context parallel can replace it from outside

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [B, L, D] -> [B, L, D]; rope = (cos, sin) from ``rope_tables``."""
        heads = (self.num_heads, -1)
        q = apply_rope(self.norm_q(self.q(x)).unflatten(-1, heads), *rope)  # [B, L, heads, d]
        k = apply_rope(self.norm_k(self.k(x)).unflatten(-1, heads), *rope)
        v = self.v(x).unflatten(-1, heads)
        return self.o(self.attn(q, k, v).flatten(2))


class CrossAttention(SelfAttention):
    """Attention from video tokens to text tokens (same projections, no RoPE); I2V adds a parallel
    branch over image tokens."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float, image_input: bool):
        super().__init__(dim, num_heads, qk_norm, eps)
        if image_input:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img: torch.Tensor | None) -> torch.Tensor:
        """x [B, L, D], context [B, T, D], context_img [B, I, D] or None -> [B, L, D]."""
        heads = (self.num_heads, -1)
        q = self.norm_q(self.q(x)).unflatten(-1, heads)
        k = self.norm_k(self.k(context)).unflatten(-1, heads)
        v = self.v(context).unflatten(-1, heads)
        out = attention(q, k, v)
        if context_img is not None:
            k_img = self.norm_k_img(self.k_img(context_img)).unflatten(-1, heads)
            v_img = self.v_img(context_img).unflatten(-1, heads)
            out = out + attention(q, k_img, v_img)
        return self.o(out.flatten(2))


class Block(nn.Module):
    """Self-attention, cross-attention and MLP, with adaLN modulation of the first and last."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, eps = cfg.dim, cfg.eps
        self.eps = eps
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, eps)
        self.norm3 = FP32LayerNorm(dim, eps) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, eps, cfg.has_image_input)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        # Learned offsets added to the shared timestep projection: (shift, scale, gate) × (attn, ffn).
        self.modulation = nn.Parameter(torch.empty(1, 6, dim))

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        context: torch.Tensor,
        context_img: torch.Tensor | None,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """x [B, L, D] fp32 residual stream, e0 [B, 6, D] fp32 -> [B, L, D] fp32."""
        dtype = self.self_attn.q.weight.dtype  # matmul dtype; norms and modulation stay fp32
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (self.modulation.float() + e0).chunk(6, dim=1)

        y = self.self_attn(_modulate(x, shift_sa, scale_sa, self.eps).to(dtype), rope)
        x = torch.addcmul(x, y, gate_sa)
        x = x + self.cross_attn(self.norm3(x).to(dtype), context, context_img)
        y = self.ffn(_modulate(x, shift_ff, scale_ff, self.eps).to(dtype))
        return torch.addcmul(x, y, gate_ff)


class Head(nn.Module):
    """Final adaLN (shift, scale from the timestep embedding) and projection to patch pixels, in fp32."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.eps = cfg.eps
        self.head = FP32Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.empty(1, 2, cfg.dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], e [B, D] fp32 -> [B, L, out_dim·pt·ph·pw] fp32."""
        shift, scale = (self.modulation.float() + e[:, None]).chunk(2, dim=1)
        return self.head(_modulate(x, shift, scale, self.eps))


class ImageEmbedding(nn.Module):
    """CLIP image features -> image context tokens (FLF2V: first and last frame, plus a learned position)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        c = cfg.image_dim
        self.proj = nn.Sequential(
            FP32LayerNorm(c), nn.Linear(c, c), nn.GELU(), nn.Linear(c, cfg.dim), FP32LayerNorm(cfg.dim)
        )
        if cfg.model_type == "flf2v":
            self.emb_pos = nn.Parameter(torch.empty(1, 2 * cfg.image_tokens, c))

    def forward(self, clip_fea: torch.Tensor) -> torch.Tensor:
        """[B, I, image_dim] -> [B, I, D]."""
        if hasattr(self, "emb_pos"):
            clip_fea = clip_fea + self.emb_pos
        return self.proj(clip_fea)


class WanDiT(nn.Module):
    """Wan 2.1 DiT: T2V, I2V and FLF2V variants, selected by ``config.model_type``.

    ``__init__`` runs ``init_weights()`` (the official initialisation). Build under
    ``with torch.device("meta"):`` to get an empty shell for loading weights: initialisation is
    then a no-op and costs nothing.
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        if config.model_type not in MODEL_TYPES:
            raise InputError(f"unknown DiT model_type {config.model_type!r}; expected one of {MODEL_TYPES}")
        if tuple(config.window_size) != (-1, -1):
            raise InputError(f"window_size {config.window_size} is not supported: "
                             "Wan 2.1 uses global attention (-1, -1)")
        if config.dim % config.num_heads or config.head_dim % 2:
            raise InputError(f"dim {config.dim} must split into {config.num_heads} heads of even size")
        self.config = config
        self.gradient_checkpointing = False
        dim = config.dim

        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
        )
        self.time_embedding = nn.Sequential(FP32Linear(config.freq_dim, dim), nn.SiLU(), FP32Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), FP32Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.head = Head(config)
        if config.has_image_input:
            self.img_emb = ImageEmbedding(config)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Official initialisation: Linear xavier-uniform with zero bias, embedding MLPs N(0, 0.02),
        patch conv xavier over its flattened kernel, zero output projection, modulation N(0, 1/dim)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, RMSNorm)):
                m.reset_parameters()
        self.patch_embedding.reset_parameters()  # bias keeps Conv3d's default init, as in the official code
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        for m in (*self.text_embedding, *self.time_embedding):
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)
        for mod in [b.modulation for b in self.blocks] + [self.head.modulation]:
            nn.init.normal_(mod, std=self.config.dim**-0.5)
        if hasattr(self, "img_emb") and hasattr(self.img_emb, "emb_pos"):
            nn.init.zeros_(self.img_emb.emb_pos)

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        *,
        clip_fea: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity.

        x:        [B, C, F, H, W] noisy latents (C = in_dim, or in_dim - y's channels when y is given).
        timestep: [B] (or one for all) timesteps in [0, 1000], int64 or float (official: int64 of σ·1000).
        context:  [B, T', text_dim] text encoder states, T' <= text_len, zero-padded here to text_len.
        clip_fea: [B, 257, image_dim] CLIP features (I2V); FLF2V: [B, 514, image_dim] (first frame's 257
                  tokens, then the last frame's) or the official [2B, 257, image_dim] (first, last, first, ...).
        y:        [B, C_y, F, H, W] conditioning latents concatenated to x on channels (I2V/FLF2V).
        Returns [B, out_dim, F, H, W] fp32.
        """
        cfg = self.config
        dtype = self.patch_embedding.weight.dtype
        x, grid = self._check_video(x, y)
        b = x.shape[0]
        context = self._check_context(context, b)
        context_img = self._embed_image(clip_fea, b, dtype)

        x = self._patchify(x.to(dtype), grid).float()  # [B, L, D]; the residual stream stays fp32 like the official
        rope = rope_tables(grid, cfg.head_dim, x.device)

        # Timestep: e [B, D] feeds the head, e0 [B, 6, D] the blocks; both fp32.
        t = torch.as_tensor(timestep, device=x.device).reshape(-1)
        t = t.expand(b) if t.numel() == 1 else t
        if t.shape[0] != b:
            raise InputError(f"timestep has {t.numel()} values for a batch of {b}")
        e = self.time_embedding(sinusoidal_embedding(t, cfg.freq_dim))
        e0 = self.time_projection(e).unflatten(1, (6, cfg.dim))

        context = self.text_embedding(context.to(dtype))  # [B, T, D]

        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, e0, context, context_img, rope, use_reentrant=False)
            else:
                x = block(x, e0, context, context_img, rope)

        x = self.head(x, e)  # [B, L, pt·ph·pw·out_dim]
        return self._unpatchify(x, grid)

    def _check_video(self, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, tuple[int, int, int]]:
        cfg = self.config
        if x.ndim != 5:
            raise InputError(f"latents must be [B, C, F, H, W], got shape {tuple(x.shape)}")
        if y is not None:
            if y.shape[0] != x.shape[0] or y.shape[2:] != x.shape[2:]:
                raise InputError(f"conditioning y {tuple(y.shape)} does not match latents {tuple(x.shape)} "
                                 "in batch and grid size")
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        if x.shape[1] != cfg.in_dim:
            extra = " (I2V/FLF2V models need the conditioning latents y)" if cfg.has_image_input and y is None else ""
            raise InputError(f"the model takes {cfg.in_dim} input channels, got {x.shape[1]}{extra}")
        size = tuple(x.shape[2:])
        if any(s % p for s, p in zip(size, cfg.patch_size)):
            raise InputError(f"latent grid (F, H, W) = {size} must be divisible by the patch size {cfg.patch_size}")
        return x, tuple(s // p for s, p in zip(size, cfg.patch_size))

    def _check_context(self, context: torch.Tensor, b: int) -> torch.Tensor:
        cfg = self.config
        if context.ndim != 3 or context.shape[0] != b or context.shape[2] != cfg.text_dim:
            raise InputError(f"context must be [{b}, <= {cfg.text_len}, {cfg.text_dim}], got {tuple(context.shape)}")
        if context.shape[1] > cfg.text_len:
            raise InputError(f"context has {context.shape[1]} tokens, more than text_len {cfg.text_len}; trim it")
        # Padding rows become text_embedding(0) = bias-derived vectors that are attended to, as in the official.
        return F.pad(context, (0, 0, 0, cfg.text_len - context.shape[1]))

    def _embed_image(self, clip_fea: torch.Tensor | None, b: int, dtype: torch.dtype) -> torch.Tensor | None:
        cfg = self.config
        if not cfg.has_image_input:
            if clip_fea is not None:
                raise InputError(f"a {cfg.model_type} model takes no clip_fea")
            return None
        if clip_fea is None:
            raise InputError(f"a {cfg.model_type} model needs clip_fea (CLIP image features)")
        if clip_fea.ndim != 3 or clip_fea.shape[2] != cfg.image_dim:
            raise InputError(f"clip_fea must be [B, tokens, {cfg.image_dim}], got {tuple(clip_fea.shape)}")
        tokens = clip_fea.shape[1]
        if cfg.model_type == "flf2v":
            tokens = 2 * cfg.image_tokens
            if clip_fea.shape[0] == 2 * b:  # official layout: first/last-frame features stacked on the batch axis
                clip_fea = clip_fea.reshape(b, tokens, cfg.image_dim)
        if clip_fea.shape[:2] != (b, tokens):
            raise InputError(f"clip_fea must be [{b}, {tokens}, {cfg.image_dim}] for a {cfg.model_type} model, "
                             f"got {tuple(clip_fea.shape)}")
        return self.img_emb(clip_fea.to(dtype))

    def _patchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B, C, F, H, W] -> [B, f·h·w, D]. The Conv3d with kernel = stride is a matmul over each patch;
        as one, it yields tokens already in [B, L, D] order (no transposed copy of the activations)."""
        (f, h, w), (pt, ph, pw) = grid, self.config.patch_size
        b, c = x.shape[:2]
        x = x.view(b, c, f, pt, h, ph, w, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)  # [B, f, h, w, C, pt, ph, pw]
        x = x.reshape(b, f * h * w, c * pt * ph * pw)
        return F.linear(x, self.patch_embedding.weight.flatten(1), self.patch_embedding.bias)

    def _unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """[B, f·h·w, pt·ph·pw·C] -> [B, C, f·pt, h·ph, w·pw]."""
        (f, h, w), (pt, ph, pw) = grid, self.config.patch_size
        x = x.view(x.shape[0], f, h, w, pt, ph, pw, -1)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # [B, C, f, pt, h, ph, w, pw]
        return x.reshape(x.shape[0], x.shape[1], f * pt, h * ph, w * pw)
