"""MUSIQ no-reference image quality (Ke et al., ICCV 2021), natively in torch.

MUSIQ scores an image from a multi-scale patch sequence: the image resized so its longer side is each of
``longer_side_lengths`` (224 and 384 for the released models) plus the image at its original resolution.
Every 32x32 patch goes through a small ResNet stem and a linear embedding; each token gets a hash-based
spatial position embedding (the patch grid squeezed onto a G x G grid, so any aspect ratio fits) and a
scale embedding; a ViT encoder reads [CLS] + tokens and a head on [CLS] gives the score (a 1..C rating
distribution turned into its mean for AVA, a single MOS otherwise).

Parameter names follow pyiqa's ``MUSIQ`` so pyiqa's converted checkpoints (``musiq_koniq_ckpt-*.pth`` etc.)
load from a local file without pyiqa: ``MusiqScorer.from_path(path)``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from openwan.bench.model_metrics.frames import check_video, sample_indices
from openwan.bench.result import MetricResult
from openwan.errors import InputError

MUSIQ_NEEDS = "MUSIQ weights (--musiq PATH)"
_STEM_DIM = 64  # ResNet stem width of every released MUSIQ model


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' zero padding (extra pixel on the bottom/right), as the original TF model used."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class _StdConv(nn.Conv2d):
    """Weight-standardised conv (BiT-style ResNet stem) with TF 'SAME' padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        # unbiased std + 1e-5: what the converted checkpoints were validated with
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(_same_pad(x, self.kernel_size[0], self.stride[0]), w, self.bias, self.stride)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _StdConv(cin, cin, 1, bias=False)
        self.gn1 = nn.GroupNorm(32, cin, eps=1e-4)
        self.conv2 = _StdConv(cin, cin, 3, bias=False)
        self.gn2 = nn.GroupNorm(32, cin, eps=1e-4)
        self.conv3 = _StdConv(cin, cout, 1, bias=False)
        self.gn3 = nn.GroupNorm(32, cout, eps=1e-4)
        self.conv_proj = _StdConv(cin, cout, 1, bias=False)
        self.gn_proj = nn.GroupNorm(32, cout, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.gn_proj(self.conv_proj(x))
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        return F.relu(self.gn3(self.conv3(y)) + skip)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise InputError(f"MUSIQ hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (m(x).view(b, n, self.heads, -1).transpose(1, 2) for m in (self.query, self.key, self.value))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        # padding tokens neither attend nor are attended to; -1e3 (not -inf) as in the reference model
        pair = mask[:, None, :, None] & mask[:, None, None, :]
        att = att.masked_fill(~pair, -1e3).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class _PosEmb(nn.Module):
    def __init__(self, grid: int, dim: int) -> None:
        super().__init__()
        self.position_emb = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)


class _ScaleEmb(nn.Module):
    def __init__(self, scales: int, dim: int) -> None:
        super().__init__()
        self.scale_emb = nn.Parameter(torch.randn(scales, dim) * 0.02)


class _Encoder(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, heads: int, layers: int, scales: int, grid: int) -> None:
        super().__init__()
        self.posembed_input = _PosEmb(grid, dim)
        self.scaleembed_input = _ScaleEmb(scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.transformer = nn.ModuleDict({f"encoderblock_{i}": _Block(dim, mlp_dim, heads) for i in range(layers)})
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.posembed_input.position_emb[0][pos] + self.scaleembed_input.scale_emb[scale]
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)
        mask = torch.cat([mask.new_ones(len(mask), 1), mask], 1)
        for blk in self.transformer.values():
            x = blk(x, mask)
        return self.encoder_norm(x)


def _hash_positions(grid: int, rows: int, cols: int) -> torch.Tensor:
    """Hash-based spatial position of each patch of a rows x cols grid: nearest-neighbour mapping of the
    patch grid onto grid x grid (torch 'nearest' rounding, which the converted checkpoints assume)."""
    g = torch.arange(grid, dtype=torch.float32)[None, None]
    r = F.interpolate(g, size=rows, mode="nearest")[0, 0].long()
    c = F.interpolate(g, size=cols, mode="nearest")[0, 0].long()
    return (r[:, None] * grid + c[None, :]).reshape(-1)


class Musiq(nn.Module):
    """MUSIQ network. ``forward`` takes RGB images in [0, 1], [B, 3, H, W], and returns [B] scores."""

    def __init__(self, *, patch_size: int = 32, hidden_size: int = 384, mlp_dim: int = 1152, num_heads: int = 6,
                 num_layers: int = 14, num_scales: int = 3, grid: int = 10, num_class: int = 1,
                 longer_side_lengths: tuple[int, ...] = (224, 384)) -> None:
        super().__init__()
        if patch_size % 4 or patch_size < 4:
            raise InputError(f"MUSIQ patch size must be a multiple of 4, got {patch_size}")
        if len(longer_side_lengths) + 1 != num_scales:
            raise InputError(f"MUSIQ with {num_scales} scale embeddings needs {num_scales - 1} resized scales "
                             f"(plus the original), got longer_side_lengths={list(longer_side_lengths)}")
        self.patch_size = patch_size
        self.grid = grid
        self.longer_side_lengths = tuple(sorted(longer_side_lengths))  # scale ids follow ascending size
        self.conv_root = _StdConv(3, _STEM_DIM, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, _STEM_DIM, eps=1e-6)
        self.block1 = _Bottleneck(_STEM_DIM, _STEM_DIM * 4)
        self.embedding = nn.Linear(_STEM_DIM * 4 * (patch_size // 4) ** 2, hidden_size)
        self.transformer_encoder = _Encoder(hidden_size, mlp_dim, num_heads, num_layers, num_scales, grid)
        head = nn.Linear(hidden_size, num_class)
        # key layout of the checkpoints: "head.0.*" for rating distributions (AVA), "head.*" for one MOS
        self.head = nn.Sequential(head, nn.Softmax(-1)) if num_class > 1 else head

    def _tokens(self, img: torch.Tensor, scale_id: int, max_len: int | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Non-overlapping patches (zero-padded 'SAME' at the border), flattened channel-major, with their
        hashed positions, scale ids and validity mask, padded/cut to ``max_len`` tokens when given."""
        p = self.patch_size
        b, _, h, w = img.shape
        patches = F.unfold(_same_pad(img, p, p), p, stride=p).transpose(1, 2)  # [B, N, 3*p*p]
        pos = _hash_positions(self.grid, math.ceil(h / p), math.ceil(w / p)).to(img.device).expand(b, -1)
        n = patches.shape[1]
        mask = torch.ones(b, n, dtype=torch.bool, device=img.device)
        if max_len is not None:
            if n >= max_len:
                patches, pos, mask = patches[:, :max_len], pos[:, :max_len], mask[:, :max_len]
            else:  # padding tokens: zero pixels, position 0, scale 0, masked out
                extra = max_len - n
                patches = F.pad(patches, (0, 0, 0, extra))
                pos = F.pad(pos, (0, extra))
                mask = F.pad(mask, (0, extra))
        scale = torch.full_like(pos, scale_id) * mask
        return patches, pos, scale, mask

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images * 2 - 1  # the model was trained on [-1, 1] inputs
        h, w = x.shape[-2:]
        parts = []
        for sid, side in enumerate(self.longer_side_lengths):
            r = side / max(h, w)
            resized = F.interpolate(x, (round(h * r), round(w * r)), mode="bicubic", align_corners=False)
            parts.append(self._tokens(resized, sid, math.ceil(side / self.patch_size) ** 2))
        parts.append(self._tokens(x, len(self.longer_side_lengths), None))  # full resolution, every patch
        patches, pos, scale, mask = (torch.cat(t, 1) for t in zip(*parts, strict=True))

        b, n, _ = patches.shape
        t = patches.reshape(b * n, 3, self.patch_size, self.patch_size)
        t = F.relu(self.gn_root(self.conv_root(t)))
        t = F.max_pool2d(_same_pad(t, 3, 2), 3, 2)
        t = self.block1(t)
        t = self.embedding(t.permute(0, 2, 3, 1).reshape(b, n, -1))  # NHWC flatten, as in TF
        cls = self.transformer_encoder(t, pos, scale, mask)[:, 0]
        q = self.head(cls)
        return (q * torch.arange(1, q.shape[-1] + 1, device=q.device, dtype=q.dtype)).sum(-1)


def _load_state_dict(p: Path) -> dict[str, torch.Tensor]:
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            sd = load_file(str(p))
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file is a user error, not a crash
        raise InputError(f"--musiq {p}: cannot read weights: {e}") from e
    for key in ("params", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise InputError(f"--musiq {p}: expected a state dict, got {type(sd).__name__}")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def musiq_config_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """Architecture sizes read off the tensor shapes (heads cannot be: every released model uses 6)."""
    try:
        emb = sd["embedding.weight"]
        head = sd["head.0.weight"] if "head.0.weight" in sd else sd["head.weight"]
        pos = sd["transformer_encoder.posembed_input.position_emb"]
        layers = {k.split(".")[2] for k in sd if k.startswith("transformer_encoder.transformer.encoderblock_")}
        return {
            "patch_size": 4 * math.isqrt(emb.shape[1] // (_STEM_DIM * 4)),
            "hidden_size": emb.shape[0],
            "mlp_dim": sd["transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight"].shape[0],
            "num_layers": len(layers),
            "num_scales": sd["transformer_encoder.scaleembed_input.scale_emb"].shape[0],
            "grid": math.isqrt(pos.shape[1]),
            "num_class": head.shape[0],
        }
    except KeyError as e:
        raise InputError(f"not a MUSIQ checkpoint (missing {e}); keys: {sorted(sd)[:6]}") from e


class MusiqScorer:
    def __init__(self, model: Musiq, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)

    @classmethod
    def from_path(cls, path: str | os.PathLike, device: str | torch.device = "cpu", *, num_heads: int = 6,
                  longer_side_lengths: tuple[int, ...] = (224, 384)) -> MusiqScorer:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"--musiq {p}: file not found")
        sd = _load_state_dict(p)
        try:
            cfg = musiq_config_from_state_dict(sd)
        except InputError as e:
            raise InputError(f"--musiq {p}: {e}") from e
        model = Musiq(**cfg, num_heads=num_heads, longer_side_lengths=longer_side_lengths)
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise InputError(f"--musiq {p}: MUSIQ weights do not fit: {e}") from e
        return cls(model, device)

    @torch.no_grad()
    def score(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> [N] scores, one frame at a time to bound memory at full resolution."""
        out = [self.model(torch.from_numpy(f).to(self.device).permute(2, 0, 1)[None].float() / 255)
               for f in frames]
        return torch.cat(out).float().cpu()


def musiq_quality(video: np.ndarray, scorer: MusiqScorer, *, frames: int = 8) -> MetricResult:
    """Mean MUSIQ score over ``frames`` evenly spaced frames (scale of the checkpoint: ~0-100 for
    KonIQ/SPAQ/PaQ-2-PiQ, 1-10 for AVA)."""
    video = check_video(video)
    idx = sample_indices(len(video), frames)
    scores = scorer.score(video[idx])
    return MetricResult("musiq", float(scores.mean()),
                        details={"scores": [round(float(s), 4) for s in scores], "frames": idx})
