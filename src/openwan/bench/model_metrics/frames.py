"""Helpers shared by the model-based metrics: video checks, frame sampling, pairwise consistency."""

from __future__ import annotations

import numpy as np
import torch

from openwan.errors import InputError


def check_video(video: np.ndarray) -> np.ndarray:
    """Videos are uint8 [T, H, W, 3]; anything else is a caller mistake, reported loudly."""
    if not isinstance(video, np.ndarray):
        raise InputError(f"video must be a numpy array, got {type(video).__name__}")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise InputError(f"video must have shape [T, H, W, 3], got {list(video.shape)}")
    if video.dtype != np.uint8:
        raise InputError(f"video must be uint8, got {video.dtype}")
    if video.shape[0] < 1 or video.shape[1] < 1 or video.shape[2] < 1:
        raise InputError(f"video has an empty dimension: {list(video.shape)}")
    return video


def sample_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly from the first to the last frame (all frames when the
    video is shorter), so long and short videos are judged on the same span of time."""
    if count < 1:
        raise InputError(f"frame count must be >= 1, got {count}")
    if num_frames <= count:
        return list(range(num_frames))
    return sorted({round(i) for i in np.linspace(0, num_frames - 1, count)})


def first_and_previous_consistency(features: torch.Tensor) -> tuple[float, list[float]]:
    """VBench subject/background consistency: for every frame t >= 1, the mean of cos(f_t, f_0) and
    cos(f_t, f_{t-1}), each clamped at 0 as VBench does; the score is the mean over t.

    ``features`` is [T, D]; needs T >= 2. Returns the score and the per-frame values."""
    f = torch.nn.functional.normalize(features.double(), dim=-1)
    to_first = (f[1:] @ f[0]).clamp(min=0.0)
    to_prev = (f[1:] * f[:-1]).sum(-1).clamp(min=0.0)
    per_frame = ((to_first + to_prev) / 2).tolist()
    return float(np.mean(per_frame)), per_frame


def model_output_features(out: object) -> torch.Tensor:
    """transformers 4.x returns a tensor from get_*_features; 5.x returns an output whose
    pooler_output holds the projected features."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if not isinstance(pooled, torch.Tensor):
        raise TypeError(f"unexpected feature output type {type(out).__name__}")
    return pooled
