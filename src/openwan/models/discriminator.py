"""3D PatchGAN discriminator for the adversarial stage of Wan-VAE training.

A stack of strided 3D convolutions that scores overlapping space-time patches of a clip (one logit
per patch) instead of the whole clip, so it judges local texture and motion, as in pix2pix's PatchGAN
and the 3D discriminators of video tokenizers. Kernels span 3 frames with symmetric zero padding, so
a single-frame "video" (an image) is scored by the middle temporal slices alone.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import InputError

_KERNEL = (3, 4, 4)
_PAD = (1, 1, 1)


class PatchDiscriminator3D(nn.Module):
    """Clip [B, C, F, H, W] -> patch logits [B, 1, F', H', W'] (F' = 1 for F <= 2**layers).

    ``layers`` stride-2 convolutions (channels base, 2 base, ... capped at 8 base), then two stride-1
    ones, the last giving the logit. ``norm``: "group" (GroupNorm after every conv but the first and
    last, batch-size independent, unlike pix2pix's BatchNorm) or "spectral" (spectral normalisation of
    every conv, no normalisation layers).
    """

    def __init__(self, in_channels: int = 3, base: int = 64, layers: int = 3,
                 norm: Literal["group", "spectral"] = "group") -> None:
        super().__init__()
        if layers < 1 or base < 1 or in_channels < 1:
            raise InputError(f"PatchDiscriminator3D needs layers, base and in_channels >= 1, got "
                             f"{layers}, {base}, {in_channels}")
        if norm not in ("group", "spectral"):
            raise InputError(f"PatchDiscriminator3D norm must be 'group' or 'spectral', got {norm!r}")
        self.layers = layers
        chans = [in_channels] + [base * min(2**i, 8) for i in range(layers + 1)]
        blocks: list[nn.Module] = []
        for i in range(layers + 1):
            stride = 2 if i < layers else 1
            grouped = i > 0 and norm == "group"  # pix2pix: no normalisation on the input layer
            # GroupNorm removes a bias
            blocks.append(self._conv(chans[i], chans[i + 1], stride, norm, bias=not grouped))
            if grouped:
                blocks.append(nn.GroupNorm(math.gcd(32, chans[i + 1]), chans[i + 1]))
            blocks.append(nn.LeakyReLU(0.2))
        blocks.append(self._conv(chans[-1], 1, 1, norm))
        self.net = nn.Sequential(*blocks)

    def _conv(self, c_in: int, c_out: int, stride: int, norm: str, bias: bool = True) -> nn.Module:
        conv = nn.Conv3d(c_in, c_out, _KERNEL, stride=stride, padding=_PAD, bias=bias)
        nn.init.normal_(conv.weight, 0.0, 0.02)  # pix2pix init
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        return spectral_norm(conv) if norm == "spectral" else conv

    def min_size(self) -> int:
        """Smallest height/width that leaves at least one patch: each stride-1 conv (k=4, p=1) drops a pixel."""
        return 3 * 2**self.layers

    def forward(self, video: Tensor) -> Tensor:
        if video.dim() != 5:
            raise InputError(f"discriminator input must be [batch, channels, frames, height, width], "
                             f"got shape {tuple(video.shape)}")
        small = min(video.shape[3:])
        if small < self.min_size():
            raise InputError(f"discriminator with {self.layers} layers needs height and width >= "
                             f"{self.min_size()}, got {tuple(video.shape[3:])}")
        return self.net(video)
