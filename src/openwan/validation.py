"""Checks of user arguments that must fail before any compute, with messages that name valid values."""

from __future__ import annotations

import logging

import torch

from .configs import PATCH_SIZE, VAE_STRIDE, Variant
from .errors import InputError, NumericalError

log = logging.getLogger(__name__)

SIZE_MULTIPLE = VAE_STRIDE[1] * PATCH_SIZE[1]  # 16: VAE 8x spatial compression x DiT 2x2 patches


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``; otherwise an InputError naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_size(text: str, example: str = "832x480") -> tuple[int, int]:
    """"WIDTHxHEIGHT" (also "W*H") -> (width, height); an InputError shows ``example``."""
    for sep in ("x", "*", "X"):
        if sep in text:
            w, h = text.split(sep, 1)
            try:
                return int(w), int(h)
            except ValueError:
                break
    raise InputError(f"size must look like WIDTHxHEIGHT (e.g. {example}), got {text!r}")


def check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value <= 0:
            raise InputError(f"{name} must be positive, got {value}")
        if value % SIZE_MULTIPLE:
            lo = max(SIZE_MULTIPLE, value // SIZE_MULTIPLE * SIZE_MULTIPLE)
            hi = lo + SIZE_MULTIPLE if lo < value else lo
            raise InputError(
                f"{name} {value} is not a multiple of {SIZE_MULTIPLE} (VAE 8x downsampling x 2x2 patches); "
                f"nearest valid {name}s: {lo} or {hi}"
            )


def check_frames(frames: int) -> None:
    stride = VAE_STRIDE[0]
    if frames < 1 or (frames - 1) % stride:
        lo = max(1, (frames - 1) // stride * stride + 1)
        hi = lo + stride if lo < frames else lo
        nearest = f"{lo} or {hi}" if lo != hi else f"{lo}"
        raise InputError(
            f"frames must be 4n+1 (1, 5, 9, …, 81) because the VAE compresses time 4x after the first frame; "
            f"got {frames}, nearest valid: {nearest}"
        )


def warn_unsupported_size(variant: Variant | None, width: int, height: int) -> str | None:
    """Like the official generate.py (which refuses), but a warning: other sizes run, with lower quality."""
    if variant is None or (width, height) in variant.sample.supported_sizes:
        return None
    sizes = ", ".join(f"{w}x{h}" for w, h in variant.sample.supported_sizes)
    msg = f"size {width}x{height} is not a trained size of {variant.name} (trained sizes: {sizes}); quality may suffer"
    log.warning(msg)
    return msg


def check_finite(x: torch.Tensor, where: str, dtype: torch.dtype) -> None:
    if not torch.isfinite(x).all():
        hint = (
            " The model runs in float16, whose range Wan's activations can overflow: use --dtype bf16 (or fp32)."
            if dtype == torch.float16
            else " Check the checkpoint (a corrupt or mismatched file) or try --dtype fp32."
        )
        raise NumericalError(f"NaN or inf values in the {where}.{hint}")


def latent_shape(width: int, height: int, frames: int, channels: int = 16) -> tuple[int, int, int, int]:
    """Shape of the noise for a video: (C, T', H/8, W/8) with T' = 1 + (T-1)/4."""
    t, h, w = VAE_STRIDE
    return channels, (frames - 1) // t + 1, height // h, width // w

