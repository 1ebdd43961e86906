"""Dense optical flow (OpenCV DIS) and the motion metrics built directly on it.

Flow is computed once per video by :func:`optical_flow` and can be passed to every flow-based
metric through ``flow=`` so that a full benchmark run pays for it only once.

Conventions: ``flow[t, y, x] = (dx, dy)`` maps pixel (x, y) of frame t to (x + dx, y + dy) in frame
t + 1, in pixels of the *original* frame size, x to the right and y downwards.
"""

from __future__ import annotations

import numpy as np

from openwan.bench.result import MetricResult
from openwan.errors import InputError

# DIS runs on frames whose long side is at most this; 512 keeps 832x480 at ~10 ms per pair on one
# core while still resolving the 1-px motions the static-region metrics care about.
MAX_FLOW_SIDE = 512
# MEDIUM (not FAST): FAST under-estimates motion by ~5% on smooth textures, which biases
# motion_magnitude; MEDIUM is within ~1% and only ~3x slower.
DIS_PRESET = "MEDIUM"
TOP_FRACTION = 0.05  # VBench's dynamic degree: mean of the largest 5% of flow magnitudes


def check_video(video: np.ndarray, name: str = "video") -> np.ndarray:
    """Validate a video: uint8 [T, H, W, 3] RGB with T >= 1 and H, W >= 8; returns it contiguous."""
    if not isinstance(video, np.ndarray):
        raise InputError(f"{name} must be a numpy array uint8 [T, H, W, 3], got {type(video).__name__}")
    if video.dtype != np.uint8:
        raise InputError(f"{name} must have dtype uint8 (RGB 0..255), got {video.dtype}; "
                         "convert with (x * 255).round().clip(0, 255).astype(np.uint8)")
    if video.ndim != 4 or video.shape[-1] != 3:
        raise InputError(f"{name} must have shape [T, H, W, 3], got {tuple(video.shape)}")
    if video.shape[0] < 1 or video.shape[1] < 8 or video.shape[2] < 8:
        raise InputError(f"{name} must have at least 1 frame of at least 8x8 pixels, got {tuple(video.shape)}")
    return np.ascontiguousarray(video)


def to_gray(video: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB -> uint8 [T, H, W] luma (BT.601, as OpenCV's RGB2GRAY)."""
    import cv2

    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in video])


def _flow_scale(h: int, w: int) -> float:
    """Factor (<= 1) by which frames are shrunk before DIS so that the long side is <= MAX_FLOW_SIDE."""
    return min(1.0, MAX_FLOW_SIDE / max(h, w))


class PairFlow:
    """Computes flow between two grey frames of one size, reusing one DIS instance and the resize plan."""

    def __init__(self, h: int, w: int) -> None:
        import cv2

        self._cv2 = cv2
        self.h, self.w = h, w
        s = _flow_scale(h, w)
        self.small = (max(8, round(w * s)), max(8, round(h * s)))  # (width, height) for cv2.resize
        # Per-axis factors that turn small-frame pixels back into original pixels.
        self.back = (w / self.small[0], h / self.small[1])
        self.dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{DIS_PRESET}"))

    def shrink(self, gray: np.ndarray) -> np.ndarray:
        """uint8 [H, W] -> uint8 [h', w'] at the DIS working size (area averaging: no aliasing)."""
        if self.small == (self.w, self.h):
            return gray
        return self._cv2.resize(gray, self.small, interpolation=self._cv2.INTER_AREA)

    def __call__(self, a_small: np.ndarray, b_small: np.ndarray) -> np.ndarray:
        """Flow a -> b of two already shrunk frames: float32 [H, W, 2] in original pixel units."""
        f = self.dis.calc(a_small, b_small, None)
        if self.small != (self.w, self.h):
            f = self._cv2.resize(f, (self.w, self.h), interpolation=self._cv2.INTER_LINEAR)
            f[..., 0] *= self.back[0]
            f[..., 1] *= self.back[1]
        return f


def optical_flow(video: np.ndarray) -> np.ndarray:
    """Dense forward flow between consecutive frames.

    video: uint8 [T, H, W, 3] RGB, T >= 2. Frames are converted to grey, shrunk so the long side is
    <= 512 px, DIS (preset MEDIUM) is run, and the flow is resized back to H x W with its vectors
    multiplied by the shrink factor, so the values are in original pixels per frame.
    Returns float32 [T-1, H, W, 2] with (dx, dy) per pixel.
    """
    video = check_video(video)
    t, h, w, _ = video.shape
    if t < 2:
        raise InputError(f"optical flow needs >= 2 frames, got {t}")
    pf = PairFlow(h, w)
    small = [pf.shrink(g) for g in to_gray(video)]
    out = np.empty((t - 1, h, w, 2), np.float32)
    for i in range(t - 1):
        out[i] = pf(small[i], small[i + 1])
    return out


def check_flow(flow: np.ndarray | None, video: np.ndarray) -> np.ndarray:
    """Return ``flow`` if it matches ``video`` ([T-1, H, W, 2]), else compute it; wrong shapes are errors."""
    if flow is None:
        return optical_flow(video)
    t, h, w, _ = video.shape
    if not isinstance(flow, np.ndarray) or flow.shape != (t - 1, h, w, 2):
        raise InputError(f"flow must be a float array [T-1, H, W, 2] = {(t - 1, h, w, 2)} for this video, "
                         f"got {getattr(flow, 'shape', type(flow).__name__)}; compute it with optical_flow(video)")
    return flow


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """float [P, H, W, 2] -> float32 [P, H, W] vector lengths in px/frame."""
    return np.hypot(flow[..., 0], flow[..., 1]).astype(np.float32, copy=False)


def top_magnitudes(mag: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray:
    """Per frame pair, the mean of the largest ``fraction`` of flow magnitudes.

    mag: float [P, H, W] from flow_magnitude -> float64 [P] in px/frame.
    """
    mag = mag.reshape(mag.shape[0], -1)
    k = max(1, int(mag.shape[1] * fraction))
    top = np.partition(mag, mag.shape[1] - k, axis=1)[:, -k:]  # O(N) selection, not a full sort
    return top.mean(1, dtype=np.float64)


def motion_magnitude(video: np.ndarray, *, flow: np.ndarray | None = None) -> MetricResult:
    """Mean over frame pairs of the mean top-5% flow magnitude, in px/frame (VBench's per-pair statistic).

    video: uint8 [T, H, W, 3]; flow: optional precomputed float [T-1, H, W, 2] from optical_flow.
    A texture translated by k px/frame scores ~k; a static video scores ~0.
    """
    name = "motion_magnitude"
    video = check_video(video)
    if video.shape[0] < 2:
        return MetricResult.not_run(name, needs="≥ 2 frames")
    flow = check_flow(flow, video)
    mag = flow_magnitude(flow)
    per_pair = top_magnitudes(mag)
    return MetricResult(name, float(per_pair.mean()), details={
        "unit": "px/frame", "per_pair": per_pair.round(4).tolist(), "mean_flow_magnitude": float(mag.mean())})


def dynamic_degree(video: np.ndarray, *, flow: np.ndarray | None = None) -> MetricResult:
    """VBench dynamic degree: 1.0 if the video moves enough, else 0.0.

    video: uint8 [T, H, W, 3]; flow: optional precomputed float [T-1, H, W, 2].
    Per frame pair s = mean of the top-5% flow magnitudes. With thres = 6 * min(H, W) / 256 and
    count_num = max(1, round(4 * T / 16)), the video is dynamic when at least count_num pairs have s > thres.
    VBench first resamples videos to ~8 fps; here pairs are consecutive frames of the video as given,
    so a 16 fps video has half VBench's per-pair motion. Resample before calling to match VBench.
    """
    name = "dynamic_degree"
    video = check_video(video)
    t, h, w, _ = video.shape
    if t < 2:
        return MetricResult.not_run(name, needs="≥ 2 frames")
    flow = check_flow(flow, video)
    mag = flow_magnitude(flow)
    per_pair = top_magnitudes(mag)
    thres = 6.0 * (min(h, w) / 256.0)
    # max(1, .): VBench's round(4*T/16) is 0 for T <= 2, which would call every video dynamic.
    count_num = max(1, round(4 * (t / 16.0)))
    moving = int((per_pair > thres).sum())
    return MetricResult(name, 1.0 if moving >= count_num else 0.0, details={
        "per_pair": per_pair.round(4).tolist(), "threshold": thres, "count_num": count_num,
        "pairs_above": moving, "mean_flow_magnitude": float(mag.mean())})
