"""Weight-free video metrics (no model downloads): motion, temporal consistency, camera motion, NIQE,
and reference-based Physics-IQ motion-mask metrics.

Every metric takes a uint8 RGB video [T, H, W, 3] and returns a MetricResult. Use
:func:`weight_free_metrics` to run all single-video metrics with one shared optical-flow pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from openwan.bench.metrics import flow as _flow
from openwan.bench.metrics.camera import camera_motion
from openwan.bench.metrics.flow import dynamic_degree, motion_magnitude, optical_flow
from openwan.bench.metrics.physics_iq import motion_masks, mse, spatial_iou, spatiotemporal_iou, weighted_spatial_iou
from openwan.bench.metrics.quality import niqe
from openwan.bench.metrics.temporal import motion_smoothness, pixel_stability, temporal_flickering
from openwan.bench.result import MetricResult
from openwan.errors import InputError

# Single-video metrics by name; each can be called as fn(video).
WEIGHT_FREE: dict[str, Callable[[np.ndarray], MetricResult]] = {
    "motion_magnitude": motion_magnitude,
    "dynamic_degree": dynamic_degree,
    "temporal_flickering": temporal_flickering,
    "pixel_stability": pixel_stability,
    "motion_smoothness": motion_smoothness,
    "camera_motion": camera_motion,
    "niqe": niqe,
}
# Metrics that reuse the consecutive-frame flow through their ``flow=`` keyword.
_USES_FLOW = frozenset({"motion_magnitude", "dynamic_degree", "pixel_stability", "camera_motion"})

# Generated-vs-reference metrics: fn(generated, reference).
PHYSICS_IQ: dict[str, Callable[[np.ndarray, np.ndarray], MetricResult]] = {
    "spatial_iou": spatial_iou,
    "spatiotemporal_iou": spatiotemporal_iou,
    "weighted_spatial_iou": weighted_spatial_iou,
    "mse": mse,
}


def weight_free_metrics(video: np.ndarray, names: list[str] | None = None) -> dict[str, MetricResult]:
    """Run the single-video metrics ``names`` (default: all of WEIGHT_FREE) on uint8 [T, H, W, 3].

    The consecutive-frame optical flow is computed once and shared by every metric that needs it.
    """
    video = _flow.check_video(video)
    names = list(WEIGHT_FREE) if names is None else names
    unknown = [n for n in names if n not in WEIGHT_FREE]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; choose from {sorted(WEIGHT_FREE)}")
    flow = None
    if video.shape[0] >= 2 and _USES_FLOW.intersection(names):
        flow = _flow.optical_flow(video)
    out = {}
    for n in names:
        fn = WEIGHT_FREE[n]
        out[n] = fn(video, flow=flow) if n in _USES_FLOW and flow is not None else fn(video)
    return out


__all__ = ["WEIGHT_FREE", "PHYSICS_IQ", "weight_free_metrics", "optical_flow", "motion_masks",
           "motion_magnitude", "dynamic_degree", "temporal_flickering", "pixel_stability",
           "motion_smoothness", "camera_motion", "niqe", "spatial_iou", "spatiotemporal_iou",
           "weighted_spatial_iou", "mse"]
