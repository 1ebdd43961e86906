"""Inflate the 2D image VAE into the 3D causal Wan-VAE (Wan 2.1 report §3, second VAE stage).

Every 2D kernel goes into the LAST temporal slice of its causal 3D kernel, the slice that sees the
current frame; the slices that see earlier frames start at zero. The temporal resamplers, which the
image model does not have, start as identities in time (``init_temporal_resampling_``). On a single
frame the 3D model then computes exactly what the 2D model computes: a causal conv on the first frame
only uses its last slice, and the first frame passes the temporal resamplers untouched. On video each
frame starts out encoded on its own, and training on clips grows the temporal slices from there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import InputError
from ..models.image_vae import ImageVAE
from ..models.vae import Resample, WanVAE


def inflate_image_vae(image_vae: ImageVAE) -> WanVAE:
    """A ``WanVAE`` (same config, device and dtype) whose single-frame reconstruction equals ``image_vae``'s."""
    if not isinstance(image_vae, ImageVAE):
        raise InputError(f"inflate_image_vae needs an ImageVAE, got {type(image_vae).__name__}")
    weight = image_vae.conv1.weight
    with torch.device(weight.device):
        vae = WanVAE(image_vae.config).to(weight.dtype)
    flat = image_vae.state_dict()
    inflated: dict[str, Tensor] = {}
    for key, target in vae.state_dict().items():
        if key in flat:
            inflated[key] = _inflate_tensor(key, flat[key], target)
        elif ".time_conv." not in key:  # an ImageVAE always has every non-temporal layer
            raise AssertionError(f"ImageVAE lacks {key}")
    leftover = set(flat) - set(inflated)
    if leftover:
        raise AssertionError(f"WanVAE has no place for {sorted(leftover)}")
    vae.load_state_dict(inflated, strict=False)  # only the time_conv layers are left out
    init_temporal_resampling_(vae)
    return vae.train(image_vae.training)


def _inflate_tensor(key: str, flat: Tensor, target: Tensor) -> Tensor:
    if flat.shape == target.shape:  # norms, biases, the attention's 2D convs
        return flat.clone()
    if flat.dim() == 4 and target.dim() == 5 and target.shape[:2] + target.shape[3:] == flat.shape:
        out = torch.zeros_like(target)
        out[:, :, -1] = flat  # the slice that sees the current frame
        return out
    raise AssertionError(f"{key}: cannot inflate {tuple(flat.shape)} into {tuple(target.shape)}")


@torch.no_grad()
def init_temporal_resampling_(vae: WanVAE) -> None:
    """Make every temporal down/upsampler an identity in time: the downsampler keeps the newest frame of
    each pair, the upsampler repeats each frame twice. (The first frame bypasses both anyway.)"""
    for module in vae.modules():
        if not isinstance(module, Resample) or not hasattr(module, "time_conv"):
            continue
        conv = module.time_conv
        conv.weight.zero_()
        conv.bias.zero_()
        eye = torch.eye(conv.weight.shape[1], dtype=conv.weight.dtype, device=conv.weight.device)
        if module.mode == "downsample3d":
            # stride 2 over [previous, a, b]-windows: the last tap is frame b, the newer of the pair
            conv.weight[:, :, -1, 0, 0] = eye
        else:
            # output channels [:C] and [C:] are frames 2t and 2t+1; both copy the current frame (last tap)
            c = conv.weight.shape[1]
            conv.weight[:c, :, -1, 0, 0] = eye
            conv.weight[c:, :, -1, 0, 0] = eye
