"""Temporal consistency metrics: flickering, stability of static regions, motion smoothness.

All scores are in [0, 1], 1 = perfectly consistent, computed on uint8 RGB pixels (0..255).
"""

from __future__ import annotations

import numpy as np

from openwan.bench.metrics import flow as _flow
from openwan.bench.result import MetricResult

# Pixels whose flow is below this (px/frame) count as static for pixel_stability: sub-pixel flow
# on a still region is DIS noise, while real motion of >= 0.5 px already changes pixel values.
STATIC_FLOW_PX = 0.5


def _pair_mae(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] x2 -> float32 [..., H, W] absolute difference averaged over channels."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(-1, dtype=np.float32)


def temporal_flickering(video: np.ndarray) -> MetricResult:
    """VBench temporal flickering: (255 - MAE) / 255, MAE = mean |frame[t+1] - frame[t]| over all pairs.

    video: uint8 [T, H, W, 3], T >= 2. A static video scores 1; any change (motion or flicker) lowers it.
    """
    name = "temporal_flickering"
    video = _flow.check_video(video)
    if video.shape[0] < 2:
        return MetricResult.not_run(name, needs="≥ 2 frames")
    # Pair by pair so an 81-frame 832x480 video never needs a full int16 copy.
    per_pair = np.array([_pair_mae(video[i], video[i + 1]).mean(dtype=np.float64)
                         for i in range(video.shape[0] - 1)])
    mae = float(per_pair.mean())
    return MetricResult(name, (255.0 - mae) / 255.0, details={"mae": mae, "per_pair_mae": per_pair.round(4).tolist()})


def pixel_stability(video: np.ndarray, *, flow: np.ndarray | None = None,
                    static_px: float = STATIC_FLOW_PX) -> MetricResult:
    """Stability of static regions: 1 - MAE / 255 over pixels whose flow magnitude is < ``static_px``.

    video: uint8 [T, H, W, 3], T >= 2; flow: optional precomputed float [T-1, H, W, 2]. For each pair
    (t, t+1) the static mask comes from flow[t]; MAE is the mean |frame[t+1] - frame[t]| over all masked
    pixels of all pairs. Unlike temporal_flickering, genuine motion does not lower it, while flicker or
    noise on still content does. A video without any static pixel is not scored.
    """
    name = "pixel_stability"
    video = _flow.check_video(video)
    if video.shape[0] < 2:
        return MetricResult.not_run(name, needs="≥ 2 frames")
    flow = _flow.check_flow(flow, video)
    total, count = 0.0, 0
    for i in range(video.shape[0] - 1):
        static = _flow.flow_magnitude(flow[i]) < static_px
        n = int(static.sum())
        if n:
            total += float(_pair_mae(video[i], video[i + 1])[static].sum(dtype=np.float64))
            count += n
    if count == 0:
        return MetricResult.not_run(name, needs=f"static regions (flow < {static_px} px/frame)")
    mae = total / count
    return MetricResult(name, 1.0 - mae / 255.0, details={
        "mae": mae, "static_fraction": count / flow[..., 0].size, "static_px": static_px})


def _midpoint(a: np.ndarray, b: np.ndarray, f_ab: np.ndarray, f_ba: np.ndarray) -> np.ndarray:
    """Frame halfway between a and b by flow warping.

    a, b: uint8 [H, W, 3]; f_ab, f_ba: float32 [H, W, 2] flows a->b and b->a. Flows from the middle
    frame follow the linear-motion approximation of Super SloMo at t = 1/2:
    F_mid->a = (F_ba - F_ab) / 4, F_mid->b = (F_ab - F_ba) / 4; both frames are backward-warped
    with bilinear sampling and averaged. Returns float32 [H, W, 3].
    """
    import cv2

    h, w = a.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    d = 0.25 * (f_ba - f_ab)  # F_mid->a; F_mid->b is -d
    wa = cv2.remap(a, gx + d[..., 0], gy + d[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    wb = cv2.remap(b, gx - d[..., 0], gy - d[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return 0.5 * (wa.astype(np.float32) + wb.astype(np.float32))


def motion_smoothness(video: np.ndarray) -> MetricResult:
    """VBench-style motion smoothness with flow interpolation instead of a learned interpolator.

    video: uint8 [T, H, W, 3], T >= 3. Every odd frame 2k+1 that has both even neighbours is rebuilt
    from frames 2k and 2k+2 (DIS flow in both directions, see _midpoint) and compared with the real
    one: score = (255 - MAE) / 255. Smooth, linear motion scores near 1; stutter, dropped or
    duplicated frames make the odd frames disagree with the interpolation and lower it.
    Uses its own flows between frames two apart (not the consecutive-frame flow).
    """
    name = "motion_smoothness"
    video = _flow.check_video(video)
    t, h, w, _ = video.shape
    if t < 3:
        return MetricResult.not_run(name, needs="≥ 3 frames")
    pf = _flow.PairFlow(h, w)
    small = {i: pf.shrink(g) for i, g in zip(range(0, t, 2), _flow.to_gray(video[0::2]))}
    per_frame = []
    for i in range(1, t - 1, 2):
        a, b = small[i - 1], small[i + 1]
        mid = _midpoint(video[i - 1], video[i + 1], pf(a, b), pf(b, a))
        per_frame.append(float(np.abs(mid - video[i].astype(np.float32)).mean(dtype=np.float64)))
    mae = float(np.mean(per_frame))
    return MetricResult(name, (255.0 - mae) / 255.0,
                        details={"mae": mae, "per_odd_frame_mae": np.round(per_frame, 4).tolist()})
