"""Camera motion classification from a robust similarity fit of the dense flow.

Convention: labels name what the CAMERA does, inferred from how the CONTENT moves in the image
(x right, y down):
  content moves left  (dx < 0) -> "pan_right";  content moves right (dx > 0) -> "pan_left";
  content moves up    (dy < 0) -> "tilt_down";  content moves down  (dy > 0) -> "tilt_up";
  content grows (scale > 1)    -> "zoom_in";    content shrinks (scale < 1)  -> "zoom_out".
"""

from __future__ import annotations

import numpy as np

from openwan.bench.metrics import flow as _flow
from openwan.bench.result import MetricResult

GRID_STEP_FRACTION = 1 / 32  # flow samples on a ~32x32 grid: enough for RANSAC, cheap to fit
# A motion counts when it moves content by more than this fraction of min(H, W) per frame
# (0.2%: ~1 px/frame at 480p, i.e. >= 16% of the frame over an 81-frame clip).
MOTION_FRACTION = 0.002
# Shake: per-pair centre translations scatter (std) by more than SHAKE_FACTOR x the motion threshold
# while the median motion stays below it.
SHAKE_FACTOR = 2.0
LABELS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out", "shake")


def _fit_pair(flow: np.ndarray, step: int) -> tuple[float, float, float] | None:
    """Similarity fit of one flow field float32 [H, W, 2] sampled every ``step`` px.

    Returns (dx, dy, scale): the displacement of the image centre and the zoom factor, or None when
    RANSAC finds no model.
    """
    import cv2

    h, w = flow.shape[:2]
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    dst = src + flow[ys.ravel(), xs.ravel()]
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if m is None:
        return None
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    dx, dy = m[:, :2] @ c + m[:, 2] - c  # motion of the centre, independent of where the origin is
    return float(dx), float(dy), scale


def _label(dx: float, dy: float, log_scale: float, size: int) -> tuple[str, float]:
    """Dominant camera motion of a (dx, dy) px/frame translation and log zoom rate.

    Zoom is compared in px too: the displacement it causes at half the short side. Returns
    (label, evidence in px/frame).
    """
    thres = MOTION_FRACTION * size
    evidence = {"pan": abs(dx), "tilt": abs(dy), "zoom": abs(log_scale) * size / 2}
    kind = max(evidence, key=evidence.get)
    if evidence[kind] <= thres:
        return "static", max(evidence.values())
    if kind == "pan":
        return ("pan_right" if dx < 0 else "pan_left"), evidence[kind]
    if kind == "tilt":
        return ("tilt_down" if dy < 0 else "tilt_up"), evidence[kind]
    return ("zoom_in" if log_scale > 0 else "zoom_out"), evidence[kind]


def camera_motion(video: np.ndarray, *, flow: np.ndarray | None = None) -> MetricResult:
    """Classify the camera motion of a clip; value = confidence in [0, 1].

    video: uint8 [T, H, W, 3], T >= 2; flow: optional precomputed float [T-1, H, W, 2].
    Each frame pair gets a RANSAC similarity fit (cv2.estimateAffinePartial2D) of the flow on a grid;
    the clip label comes from the median centre translation and median log-scale over pairs (see the
    module docstring for the sign convention and MOTION_FRACTION for the threshold). If the median is
    static but per-pair translations scatter by more than SHAKE_FACTOR x threshold, the label is "shake".
    Confidence = fraction of pairs whose own label equals the clip label (for "shake": fraction of
    non-static pairs). details: label, median dx/dy (px/frame), zoom per frame, per-pair labels.
    """
    name = "camera_motion"
    video = _flow.check_video(video)
    t, h, w, _ = video.shape
    if t < 2:
        return MetricResult.not_run(name, needs="≥ 2 frames")
    flow = _flow.check_flow(flow, video)
    size = min(h, w)
    step = max(4, round(size * GRID_STEP_FRACTION))
    fits = [f for f in (_fit_pair(flow[i], step) for i in range(t - 1)) if f is not None]
    if not fits:
        return MetricResult.not_run(name, needs="textured frames (no similarity fit succeeded)")
    arr = np.array(fits)
    dxs, dys, log_s = arr[:, 0], arr[:, 1], np.log(arr[:, 2])
    pair_labels = [_label(dx, dy, ls, size)[0] for dx, dy, ls in zip(dxs, dys, log_s)]
    mdx, mdy, mls = float(np.median(dxs)), float(np.median(dys)), float(np.median(log_s))
    label, evidence = _label(mdx, mdy, mls, size)
    thres = MOTION_FRACTION * size
    jitter = float(np.hypot(dxs.std(), dys.std()))
    if label == "static" and jitter > SHAKE_FACTOR * thres:
        label = "shake"
        confidence = float(np.mean([p != "static" for p in pair_labels]))
    else:
        confidence = float(np.mean([p == label for p in pair_labels]))
    return MetricResult(name, confidence, details={
        "label": label, "dx": mdx, "dy": mdy, "zoom_per_frame": float(np.exp(mls)),
        "evidence_px": evidence, "threshold_px": thres, "translation_std_px": jitter,
        "pairs_fitted": len(fits), "pair_labels": pair_labels})
