"""Physics-IQ-style metrics: where and when a generated video moves, compared with a real reference.

Motion masks come from grey frame differences. Both videos must have the same frame count (a physics
continuation is compared frame by frame); if the frame sizes differ, the reference is resized to the
generated size (area interpolation) and details["ref_resized"] says so.
An IoU of two empty masks is taken as 1.0: both videos agree that nothing moves.
"""

from __future__ import annotations

import numpy as np

from openwan.bench.metrics import flow as _flow
from openwan.bench.result import MetricResult
from openwan.errors import InputError

# A pixel moves when its grey value changes by more than this (0..255) between consecutive frames:
# above compression / sensor noise of real footage, below any visible object motion.
MOTION_THRESHOLD = 10.0


def motion_masks(video: np.ndarray, threshold: float = MOTION_THRESHOLD) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB -> bool [T-1, H, W]: |grey[t+1] - grey[t]| > threshold."""
    video = _flow.check_video(video)
    if video.shape[0] < 2:
        raise InputError(f"motion masks need >= 2 frames, got {video.shape[0]}")
    g = _flow.to_gray(video).astype(np.int16)
    return np.abs(np.diff(g, axis=0)) > threshold


def _pair(gen: np.ndarray, ref: np.ndarray, name: str,
          min_frames: int = 2) -> tuple[np.ndarray, np.ndarray, bool] | MetricResult:
    """Validate gen/ref and bring ref to gen's size; MetricResult.not_run when shorter than min_frames."""
    import cv2

    gen = _flow.check_video(gen, "generated video")
    ref = _flow.check_video(ref, "reference video")
    if gen.shape[0] != ref.shape[0]:
        raise InputError(f"{name}: generated and reference videos need the same frame count, "
                         f"got {gen.shape[0]} and {ref.shape[0]}; trim them to the compared window")
    if gen.shape[0] < min_frames:
        return MetricResult.not_run(name, needs=f"≥ {min_frames} frames")
    resized = gen.shape[1:3] != ref.shape[1:3]
    if resized:
        ref = np.stack([cv2.resize(f, (gen.shape[2], gen.shape[1]), interpolation=cv2.INTER_AREA) for f in ref])
    return gen, ref, resized


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def spatial_iou(gen: np.ndarray, ref: np.ndarray, threshold: float = MOTION_THRESHOLD) -> MetricResult:
    """IoU of where motion happens at any time: masks OR-ed over time, bool [H, W] each."""
    name = "spatial_iou"
    p = _pair(gen, ref, name)
    if isinstance(p, MetricResult):
        return p
    g, r = motion_masks(p[0], threshold).any(0), motion_masks(p[1], threshold).any(0)
    return MetricResult(name, _iou(g, r), details={"ref_resized": p[2], "threshold": threshold})


def spatiotemporal_iou(gen: np.ndarray, ref: np.ndarray, threshold: float = MOTION_THRESHOLD) -> MetricResult:
    """Mean over frame pairs t of IoU(gen_mask[t], ref_mask[t]): where AND when motion happens."""
    name = "spatiotemporal_iou"
    p = _pair(gen, ref, name)
    if isinstance(p, MetricResult):
        return p
    g, r = motion_masks(p[0], threshold), motion_masks(p[1], threshold)
    per = [_iou(a, b) for a, b in zip(g, r)]
    return MetricResult(name, float(np.mean(per)), details={
        "per_pair": np.round(per, 4).tolist(), "ref_resized": p[2], "threshold": threshold})


def weighted_spatial_iou(gen: np.ndarray, ref: np.ndarray, threshold: float = MOTION_THRESHOLD) -> MetricResult:
    """sum_px min(c_gen, c_ref) / sum_px max(c_gen, c_ref), c = number of frame pairs a pixel moves in."""
    name = "weighted_spatial_iou"
    p = _pair(gen, ref, name)
    if isinstance(p, MetricResult):
        return p
    cg = motion_masks(p[0], threshold).sum(0)
    cr = motion_masks(p[1], threshold).sum(0)
    den = np.maximum(cg, cr).sum()
    value = 1.0 if den == 0 else float(np.minimum(cg, cr).sum() / den)
    return MetricResult(name, value, details={"ref_resized": p[2], "threshold": threshold})


def mse(gen: np.ndarray, ref: np.ndarray) -> MetricResult:
    """Pixel MSE between the videos with values scaled to [0, 1] (so 0 = identical, 1 = black vs white)."""
    name = "mse"
    p = _pair(gen, ref, name, min_frames=1)
    if isinstance(p, MetricResult):
        return p
    d = [((a.astype(np.float32) - b.astype(np.float32)) / 255.0) ** 2 for a, b in zip(p[0], p[1])]
    return MetricResult(name, float(np.mean([x.mean(dtype=np.float64) for x in d])), details={"ref_resized": p[2]})
