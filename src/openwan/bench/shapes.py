"""Ground-truth checker for the procedural "shapes world": what happened in a generated clip.

Pipeline: per frame, fit a smooth background (plane through the border pixels), keep pixels that are
far from it and close to a palette colour (Lab distance), split them into connected blobs, classify
each blob's shape from contour features, associate blobs across frames into tracks, then read the
events (direction, fall + bounce, collision, growth, camera pan) off the tracks.

Conventions (image coordinates, x right, y down):
  * motion "up" means the centroid's y decreases; a fall has a POSITIVE quadratic coefficient.
  * camera_pan names what the CAMERA does, inferred from the background content:
    content moves right (dx > 0) -> "left"; content moves left (dx < 0) -> "right"
    (same convention as openwan.bench.metrics.camera).
  * an object's direction is measured relative to the scene, i.e. with the background shift removed,
    so an object riding along with a pan is "still".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openwan.bench.result import MetricResult
from openwan.data.synth_world import COLOURS as WORLD_COLOURS
from openwan.errors import InputError

# The world's own palette, so the checker recognises exactly the colours `openwan data synth-world` renders.
DEFAULT_COLOURS: dict[str, tuple[int, int, int]] = dict(WORLD_COLOURS)
SHAPES = ("circle", "square", "triangle", "star")
DIRECTIONS = ("left", "right", "up", "down", "still")
PANS = ("left", "right", "none")
SIZE_CHANGES = ("grows", "shrinks", "none")

# Lab (L 0..100) distances: a pixel is foreground when within MAX_COLOUR_DIST of a palette colour,
# at least MIN_BG_DIST from the background, and closer to the palette colour than to the background.
MAX_COLOUR_DIST = 35.0
MIN_BG_DIST = 15.0
MIN_BLOB_AREA = 20  # px; ~5x5, below the smallest shape the world draws (>= 8 px wide)
CONTACT_TOL_PX = 2  # anti-aliased edges are unassigned, so touching masks sit ~1-2 px apart
STILL_FRACTION = 0.05  # net displacement below 5% of min(H, W) (and below 2 px) is "still"
PAN_MIN_PX = 2.0  # a cumulative background shift below this is no pan
PAN_STEP_OUTLIER = 1 / 16  # a frame-to-frame background step this far (x the side) off the clip's median
                          # step is a wrong correlation peak: a camera pan shifts the scene steadily
SIZE_RATIO = 1.3  # end/start area ratio for grows/shrinks
FALL_MIN_A = 0.05  # px/frame^2; quadratic coefficient that counts as acceleration
FALL_MIN_R2 = 0.95


@dataclass(frozen=True)
class Palette:
    """Colour name -> RGB of the objects the world draws."""

    colours: dict[str, tuple[int, int, int]] = field(default_factory=lambda: dict(DEFAULT_COLOURS))

    def __post_init__(self) -> None:
        if not self.colours:
            raise InputError("Palette needs at least one colour")
        for name, rgb in self.colours.items():
            if len(rgb) != 3 or not all(0 <= int(c) <= 255 for c in rgb):
                raise InputError(f"palette colour {name!r} must be 3 ints in 0..255, got {rgb!r}")

    @property
    def names(self) -> list[str]:
        return list(self.colours)

    def lab(self) -> np.ndarray:
        """float32 [K, 3] Lab of the palette colours, in the order of ``names``."""
        rgb = np.array([self.colours[n] for n in self.names], np.uint8)[None]
        return _to_lab(rgb)[0]


@dataclass
class Blob:
    colour: str
    area: int
    centroid: tuple[float, float]  # (x, y)
    bbox: tuple[int, int, int, int]  # (x, y, w, h)
    mask: np.ndarray  # bool [H, W]
    shape: str | None = None


@dataclass
class Track:
    """One object across the clip; lists are indexed by frame, None / 0 where it was not seen."""

    colour: str
    blobs: list[Blob | None]

    @property
    def frames(self) -> list[int]:
        return [t for t, b in enumerate(self.blobs) if b is not None]

    @property
    def centroids(self) -> list[tuple[float, float] | None]:
        return [None if b is None else b.centroid for b in self.blobs]

    @property
    def areas(self) -> list[float]:
        return [0.0 if b is None else float(b.area) for b in self.blobs]

    @property
    def total_area(self) -> float:
        return float(sum(self.areas))

    @property
    def shape(self) -> str | None:
        """Majority vote of the per-frame shape labels; a tie goes to the label whose frames cover more
        pixels (a bigger blob's outline is classified more reliably), then to the label seen first."""
        count: dict[str, int] = {}
        area: dict[str, int] = {}
        for b in self.blobs:
            if b is not None and b.shape is not None:
                count[b.shape] = count.get(b.shape, 0) + 1
                area[b.shape] = area.get(b.shape, 0) + b.area
        # max() keeps the first of equal keys, and dicts keep first-seen order: no hash order involved.
        return max(count, key=lambda s: (count[s], area[s])) if count else None


@dataclass
class FallFit:
    """Quadratic fit y(t) = a t^2 + b t + c of the main object before its lowest point."""

    a: float  # px/frame^2 (acceleration is 2a); positive = accelerating downward
    b: float
    c: float
    r2: float
    lowest_frame: int
    bounce: bool  # the object reversed upward after its lowest point
    rebound_px: float

    @property
    def falls(self) -> bool:
        return self.a > FALL_MIN_A and self.r2 >= FALL_MIN_R2


@dataclass
class ShapesAnalysis:
    num_frames: int
    colours: list[str]  # colours ranked by total area over the clip
    shapes: list[str]  # shape per track, tracks ranked by total area
    main_colour: str | None
    main_shape: str | None
    motion: str | None  # of the main object relative to the scene; None when no object
    displacement: tuple[float, float] | None  # net (dx, dy) of the main object relative to the scene
    background_shift: tuple[float, float]  # cumulative (dx, dy) of the background content
    camera_pan: str
    fall: FallFit | None
    falls_and_bounces: bool
    collision: bool
    collision_details: dict[str, Any]
    size_change: str | None  # grows / shrinks / none; None when no object
    tracks: list[Track]


# ----------------------------------------------------------------------------------------- helpers


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _check_video(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
        raise InputError(f"video must be uint8 [T, H, W, 3] RGB, got {video.dtype} {video.shape}")
    if min(video.shape[1:3]) < 16:
        raise InputError(f"video frames must be at least 16x16, got {video.shape[1:3]}")
    return video


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise InputError(f"frame must be uint8 [H, W, 3] RGB, got {frame.dtype} {frame.shape}")
    return frame


def estimate_background(frame: np.ndarray) -> np.ndarray:
    """float32 [H, W, 3] RGB background: per-channel plane a + b x + c y through the border pixels.

    A plane (not just the median) so linear gradient backgrounds are modelled exactly; refit once
    without outliers so objects touching the border do not pull it.
    """
    frame = _check_frame(frame)
    h, w = frame.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    border = np.zeros((h, w), bool)
    border[:2], border[-2:], border[:, :2], border[:, -2:] = True, True, True, True
    x, y = xs[border].astype(np.float64), ys[border].astype(np.float64)
    a = np.stack([np.ones_like(x), x, y], 1)
    vals = frame[border].astype(np.float64)
    keep = np.ones(len(x), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(a[keep], vals[keep], rcond=None)
        resid = np.abs(a @ coef - vals).max(1)
        keep = resid <= max(12.0, 2.5 * float(np.median(resid)))
        if keep.sum() < 8:  # border almost entirely covered: fall back to the median colour
            coef = np.zeros((3, 3))
            coef[0] = np.median(vals, 0)
            break
    full = np.stack([np.ones(h * w), xs.ravel(), ys.ravel()], 1) @ coef
    return full.reshape(h, w, 3).astype(np.float32)


def colour_labels(frame: np.ndarray, palette: Palette) -> np.ndarray:
    """int32 [H, W]: palette index per pixel, -1 for background / unmatched pixels."""
    frame = _check_frame(frame)
    lab = _to_lab(frame)
    bg = _to_lab(np.clip(estimate_background(frame), 0, 255).astype(np.uint8))
    pal = palette.lab()
    d = np.linalg.norm(lab[:, :, None, :] - pal[None, None], axis=-1)  # [H, W, K]
    idx = d.argmin(-1)
    dmin = d.min(-1)
    dbg = np.linalg.norm(lab - bg, axis=-1)
    fg = (dmin < MAX_COLOUR_DIST) & (dbg > MIN_BG_DIST) & (dmin < dbg)
    return np.where(fg, idx, -1).astype(np.int32)


def segment(frame: np.ndarray, palette: Palette | None = None, min_area: int = MIN_BLOB_AREA,
            classify: bool = True) -> list[Blob]:
    """Blobs of palette-coloured pixels, largest first; blobs under ``min_area`` px are dropped."""
    import cv2

    palette = palette or Palette()
    labels = colour_labels(frame, palette)
    blobs: list[Blob] = []
    for k, name in enumerate(palette.names):
        m = (labels == k).astype(np.uint8)
        if m.sum() < min_area:
            continue
        n, comp, stats, cents = cv2.connectedComponentsWithStats(m, connectivity=8)
        for i in range(1, n):
            area = int(stats[i, cv2.CC_STAT_AREA])
            if area < min_area:
                continue
            mask = comp == i
            bbox = tuple(int(v) for v in stats[i, :4])
            blob = Blob(name, area, (float(cents[i, 0]), float(cents[i, 1])), bbox, mask)  # type: ignore[arg-type]
            if classify:
                blob.shape = classify_shape(mask)
            blobs.append(blob)
    blobs.sort(key=lambda b: -b.area)
    return blobs


# ----------------------------------------------------------------------------------------- shapes


def shape_features(mask: np.ndarray) -> dict[str, float]:
    """Contour features of the largest component of a binary mask (see classify_shape)."""
    import cv2

    m = np.ascontiguousarray(mask.astype(np.uint8))
    # 2x upsampling makes the pixel-staircase perimeter less dominant for small shapes
    m = cv2.resize(m, (m.shape[1] * 2, m.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    m = np.pad(m, 2)  # shapes touching the border still get a closed contour
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise InputError("classify_shape needs a non-empty mask")
    c = max(contours, key=cv2.contourArea)
    area = float(cv2.contourArea(c))
    perim = float(cv2.arcLength(c, True))
    hull = cv2.convexHull(c)
    hull_area = float(cv2.contourArea(hull))
    hull_perim = float(cv2.arcLength(hull, True))
    (_, _), (rw, rh), _ = cv2.minAreaRect(c)
    approx = cv2.approxPolyDP(hull, 0.06 * hull_perim, True)
    return {
        "area": area,
        "circularity": 4 * np.pi * area / max(perim ** 2, 1e-6),
        "solidity": area / max(hull_area, 1e-6),
        "rect_fill": area / max(rw * rh, 1e-6),  # square ~1, circle ~pi/4, triangle ~1/2
        "aspect": min(rw, rh) / max(rw, rh, 1e-6),
        "vertices": float(len(approx)),  # corners of the convex hull: 3 for a triangle, 5 for a star
    }


def classify_shape(mask: np.ndarray) -> str:
    """circle / square / triangle / star from contour features of a bool [H, W] mask.

    Stars are the only concave shape (low solidity) whose convex hull has more than three corners: a
    generated triangle often has sides bowed inward, which makes it concave, but its hull stays a
    triangle. Among the rest the fill of the minimum-area rectangle separates square (~1) / circle
    (~0.79) / triangle (~0.5), and the hull's corner count breaks ties near the thresholds.
    """
    f = shape_features(mask)
    if f["solidity"] < 0.82 and f["vertices"] >= 4:
        return "star"
    if f["rect_fill"] < 0.66 or (f["vertices"] == 3 and f["rect_fill"] < 0.72):
        return "triangle"
    if f["rect_fill"] > 0.89 or (f["vertices"] == 4 and f["rect_fill"] > 0.85 and f["aspect"] > 0.8):
        return "square"
    return "circle"


# ----------------------------------------------------------------------------------------- tracks


def track(video: np.ndarray, palette: Palette | None = None) -> list[Track]:
    """Associate blobs frame to frame (same colour, nearest centroid); tracks ranked by total area."""
    video = _check_video(video)
    palette = palette or Palette()
    t_len, h, w = video.shape[:3]
    max_jump = 0.3 * max(h, w)  # beyond this a same-coloured blob is another object
    tracks: list[Track] = []
    for t in range(t_len):
        blobs = segment(video[t], palette)
        free = set(range(len(blobs)))
        # greedy matching on all (track, blob) pairs by distance to the track's last position
        pairs = []
        for ti, tr in enumerate(tracks):
            last = next((b for b in reversed(tr.blobs) if b is not None), None)
            if last is None:
                continue
            for bi, b in enumerate(blobs):
                if b.colour == tr.colour:
                    d = float(np.hypot(b.centroid[0] - last.centroid[0], b.centroid[1] - last.centroid[1]))
                    if d <= max_jump:
                        pairs.append((d, ti, bi))
        used_tracks: set[int] = set()
        for _, ti, bi in sorted(pairs):
            if ti in used_tracks or bi not in free:
                continue
            tracks[ti].blobs.append(blobs[bi])
            used_tracks.add(ti)
            free.discard(bi)
        for ti, tr in enumerate(tracks):
            if ti not in used_tracks:
                tr.blobs.append(None)
        for bi in sorted(free):
            tracks.append(Track(blobs[bi].colour, [None] * t + [blobs[bi]]))
    tracks.sort(key=lambda tr: -tr.total_area)
    return tracks


# ----------------------------------------------------------------------------------------- camera


def background_shift(video: np.ndarray, tracks: list[Track]) -> np.ndarray:
    """float64 [T, 2]: cumulative (dx, dy) of the background content relative to frame 0.

    Phase correlation of consecutive grey frames. Per pair, the objects of BOTH frames are painted
    over with the same constant in both images, so a moving object leaves no signal and a static
    background gives exactly zero; backgrounds without texture (flat, gradient) give zeros too. A step
    more than PAN_STEP_OUTLIER of the side off the clip's median step is replaced by the median.
    """
    import cv2

    t_len, h, w = video.shape[:3]
    win = cv2.createHanningWindow((w, h), cv2.CV_32F)
    kernel = np.ones((5, 5), np.uint8)
    greys, masks, textured = [], [], []
    for t in range(t_len):
        fg = np.zeros((h, w), np.uint8)
        for tr in tracks:
            if tr.blobs[t] is not None:
                fg |= tr.blobs[t].mask.astype(np.uint8)
        masks.append(cv2.dilate(fg, kernel).astype(bool))
        g = cv2.cvtColor(video[t], cv2.COLOR_RGB2GRAY).astype(np.float32)
        bg = cv2.cvtColor(np.clip(estimate_background(video[t]), 0, 255).astype(np.uint8),
                          cv2.COLOR_RGB2GRAY).astype(np.float32)
        greys.append(g)
        # texture left after removing the smooth background: none -> nothing to correlate on
        textured.append(float((g - bg)[~masks[-1]].std()) > 2.0 if (~masks[-1]).any() else False)
    steps = np.zeros((t_len, 2))
    for t in range(1, t_len):
        if textured[t - 1] and textured[t]:
            fg = masks[t - 1] | masks[t]
            a, b = greys[t - 1], greys[t]
            if (~fg).any():
                # objects painted with one constant in both images; the static hole biases the
                # peak a little toward zero, which the SSD refinement below removes
                a, b = a.copy(), b.copy()
                a[fg], b[fg] = float(a[~fg].mean()), float(b[~fg].mean())
                (dx, dy), response = cv2.phaseCorrelate(a, b, win)
                if response > 0.05:  # content in b sits at a's position + (dx, dy)
                    steps[t] = _refine_shift(greys[t - 1], greys[t], ~masks[t - 1], ~masks[t], dx, dy)
    if t_len > 2:
        # one frame pair whose wall changed (a generated clip can redraw it) gives a peak anywhere
        median = np.median(steps[1:], axis=0)
        off = np.abs(steps[1:] - median).max(axis=1) > PAN_STEP_OUTLIER * min(h, w)
        steps[1:][off] = median
    return np.cumsum(steps, axis=0)


def _refine_shift(a: np.ndarray, b: np.ndarray, valid_a: np.ndarray, valid_b: np.ndarray,
                  dx: float, dy: float) -> np.ndarray:
    """Sub-pixel shift by a parabola through the masked SSD at integer shifts around the estimate.

    phaseCorrelate's own sub-pixel centroid is biased by ~10% under windowing, which adds up over a
    clip; the SSD minimum on the unmasked overlap is not.
    """
    h, w = a.shape

    def cost(sx: int, sy: int) -> float:
        if abs(sx) >= w // 2 or abs(sy) >= h // 2:
            return np.inf
        # a[y, x] should equal b[y + sy, x + sx]
        ya, yb = slice(max(0, -sy), h - max(0, sy)), slice(max(0, sy), h - max(0, -sy))
        xa, xb = slice(max(0, -sx), w - max(0, sx)), slice(max(0, sx), w - max(0, -sx))
        valid = valid_a[ya, xa] & valid_b[yb, xb]
        return float(((a[ya, xa] - b[yb, xb])[valid] ** 2).mean()) if valid.sum() >= 16 else np.inf

    cx, cy = round(dx), round(dy)
    for _ in range(8):  # hill-climb on integer shifts: fixes a peak that is off by a few px
        ssd = np.array([[cost(cx + i, cy + j) for i in (-1, 0, 1)] for j in (-1, 0, 1)])
        if not np.isfinite(ssd[1, 1]):
            return np.array([dx, dy])
        j, i = np.unravel_index(int(np.argmin(ssd)), ssd.shape)
        if (i, j) == (1, 1):
            break
        cx, cy = cx + i - 1, cy + j - 1

    def vertex(lo: float, mid: float, hi: float) -> float:
        if not (np.isfinite(lo) and np.isfinite(hi)):
            return 0.0
        den = lo - 2 * mid + hi
        return float(np.clip(0.5 * (lo - hi) / den, -1.0, 1.0)) if den > 1e-9 else 0.0

    return np.array([cx + vertex(ssd[1, 0], ssd[1, 1], ssd[1, 2]), cy + vertex(ssd[0, 1], ssd[1, 1], ssd[2, 1])])


def _pan_label(total_dx: float, width: int) -> str:
    if abs(total_dx) < max(PAN_MIN_PX, 0.03 * width):
        return "none"
    return "left" if total_dx > 0 else "right"  # content moving right = camera panning left


# ----------------------------------------------------------------------------------------- events


def _inside(bbox: tuple[int, int, int, int], h: int, w: int) -> bool:
    x, y, bw, bh = bbox
    return x > 0 and y > 0 and x + bw < w and y + bh < h


def _direction(xy: np.ndarray, ts: np.ndarray, min_side: int) -> tuple[str, tuple[float, float]]:
    """Net displacement from a linear fit of x(t), y(t) (robust to single-frame jitter)."""
    if len(ts) < 2:
        return "still", (0.0, 0.0)
    span = float(ts[-1] - ts[0])
    dx = float(np.polyfit(ts, xy[:, 0], 1)[0]) * span
    dy = float(np.polyfit(ts, xy[:, 1], 1)[0]) * span
    if max(abs(dx), abs(dy)) < max(2.0, STILL_FRACTION * min_side):
        return "still", (dx, dy)
    if abs(dx) >= abs(dy):
        return ("right" if dx > 0 else "left"), (dx, dy)
    return ("down" if dy > 0 else "up"), (dx, dy)


def fit_fall(ts: np.ndarray, ys: np.ndarray, height: int) -> FallFit | None:
    """Quadratic fit before the first impact and a rebound check after it.

    The impact is the first turning point where the object starts moving up again (more than 1 px),
    or the lowest point when it never does; later bounces can be sampled lower than the first one, so
    the global lowest point could lie past a bounce. The first frame within 1 px of the impact height
    is the impact frame; it is left out of the fit when there are enough frames, because the sampled
    frame usually straddles the reflection.
    """
    if len(ts) < 4:
        return None
    ys = ys.astype(np.float64)
    peak = len(ys) - 1
    running = ys[0]
    for i in range(1, len(ys)):
        running = max(running, ys[i - 1])
        if ys[i] < running - 1.0:  # moving up again: the impact was the running maximum before i
            peak = i - 1
            break
    head = ys[: peak + 1]
    ymax = float(head.max()) if peak < len(ys) - 1 else float(ys.max())
    low = int(np.argmax(ys >= ymax - 1.0))
    end = low if low >= 4 else low + 1
    if end < 4:
        return None
    t_fit, y_fit = ts[:end].astype(np.float64), ys[:end].astype(np.float64)
    a, b, c = np.polyfit(t_fit, y_fit, 2)
    pred = a * t_fit ** 2 + b * t_fit + c
    ss_tot = float(((y_fit - y_fit.mean()) ** 2).sum())
    r2 = 1.0 - float(((y_fit - pred) ** 2).sum()) / ss_tot if ss_tot > 1e-9 else 0.0
    after = ys[low + 1:]
    rebound = float(ymax - after.min()) if len(after) else 0.0
    bounce = rebound >= max(2.0, 0.04 * height)
    return FallFit(float(a), float(b), float(c), r2, int(ts[low]), bounce, rebound)


def _size_change(areas: np.ndarray) -> str:
    if len(areas) < 3:
        return "none"
    k = max(1, len(areas) // 5)
    start, end = float(np.median(areas[:k])), float(np.median(areas[-k:]))
    if end > SIZE_RATIO * start:
        return "grows"
    if start > SIZE_RATIO * end:
        return "shrinks"
    return "none"


def _collision(tracks: list[Track], video_len: int) -> tuple[bool, dict[str, Any]]:
    """Two objects whose gap shrinks until their masks come within CONTACT_TOL_PX of each other.

    A fast collision may touch between two frames, so at the frame where the centres are closest the
    tolerance grows by half the per-frame change of their distance there.
    """
    import cv2

    for i in range(len(tracks)):
        for j in range(i + 1, len(tracks)):
            a, b = tracks[i], tracks[j]
            dists: dict[int, float] = {}
            for t in range(video_len):
                ba, bb = a.blobs[t], b.blobs[t]
                if ba is not None and bb is not None:
                    dists[t] = float(np.hypot(ba.centroid[0] - bb.centroid[0], ba.centroid[1] - bb.centroid[1]))
            farthest = -np.inf  # over the earlier frames
            for t, d in dists.items():
                farthest, before = max(farthest, d), farthest
                # contact must be reached by approaching: earlier frames were farther apart
                if before <= d + 2.0:
                    continue
                tol = float(CONTACT_TOL_PX)
                around = [dists[tt] for tt in (t - 1, t + 1) if tt in dists]
                if around and min(around) >= d:  # closest frame: contact may lie between it and a neighbour
                    tol += max(dd - d for dd in around) / 2
                k = 2 * math.ceil(tol) + 1
                grown = cv2.dilate(a.blobs[t].mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
                if (grown & b.blobs[t].mask).any():
                    return True, {"tracks": (a.colour, b.colour), "frame": t, "distance_px": d,
                                  "tolerance_px": tol}
    return False, {}


# ----------------------------------------------------------------------------------------- analyse


def analyse(video: np.ndarray, palette: Palette | None = None) -> ShapesAnalysis:
    """Everything the checker reads off a uint8 [T, H, W, 3] RGB clip."""
    video = _check_video(video)
    palette = palette or Palette()
    t_len, h, w = video.shape[:3]
    tracks = track(video, palette)
    shifts = background_shift(video, tracks)
    total = shifts[-1]
    pan = _pan_label(float(total[0]), w)

    colour_area: dict[str, float] = {}
    for tr in tracks:
        colour_area[tr.colour] = colour_area.get(tr.colour, 0.0) + tr.total_area
    colours = sorted(colour_area, key=lambda c: -colour_area[c])
    shapes = [s for s in (tr.shape for tr in tracks) if s is not None]

    main = tracks[0] if tracks else None
    motion = displacement = fall = size = None
    falls_and_bounces = False
    if main is not None:
        ts = np.array(main.frames)
        xy = np.array([main.blobs[t].centroid for t in ts], np.float64)
        # object positions relative to the scene: remove the background shift when the camera pans
        rel = xy - shifts[ts] if pan != "none" else xy
        # frames where the object is cut by the frame edge bias its centroid: leave them out
        inside = np.array([_inside(main.blobs[t].bbox, h, w) for t in ts])
        keep = inside if inside.sum() >= 2 else np.ones(len(ts), bool)
        motion, displacement = _direction(rel[keep], ts[keep], min(h, w))
        fall = fit_fall(ts, rel[:, 1], h)
        falls_and_bounces = bool(fall is not None and fall.falls and fall.bounce)
        size = _size_change(np.array([main.blobs[t].area for t in ts], np.float64))
    collision, coll_details = _collision(tracks, t_len)
    return ShapesAnalysis(
        num_frames=t_len, colours=colours, shapes=shapes,
        main_colour=main.colour if main else None, main_shape=main.shape if main else None,
        motion=motion, displacement=displacement,
        background_shift=(float(total[0]), float(total[1])), camera_pan=pan,
        fall=fall, falls_and_bounces=falls_and_bounces,
        collision=collision, collision_details=coll_details, size_change=size, tracks=tracks,
    )


# ----------------------------------------------------------------------------------------- scoring

_FALL_WORDS = {"fall", "falls", "fall_bounce", "falls_and_bounces", "bounce"}
_COLLIDE_WORDS = {"collide", "collides", "collision"}
_SIZE_WORDS = {"grow": "grows", "grows": "grows", "shrink": "shrinks", "shrinks": "shrinks"}
_PAN_WORDS = {"pan_left": "left", "pan_right": "right"}
SCORE_NAMES = ("colour_correct", "shape_correct", "motion_correct", "fall_acceleration_r2",
               "bounce_detected", "collision_met", "size_change_correct", "camera_pan_correct")


def score_prompt(analysis: ShapesAnalysis, expected: dict[str, Any]) -> dict[str, MetricResult]:
    """Compare an analysis with the prompt's attributes.

    ``expected`` keys: colour (or color), shape, motion (left/right/up/down/still, or an event word:
    fall/bounce, collide, grow/shrink, pan_left/pan_right), and optionally falls/collision (bool),
    size_change, camera_pan. Other keys are ignored. Every name in SCORE_NAMES is returned; one that
    the prompt does not ask about is not_run. When the prompt asks for something and the clip shows
    no object, the score is 0 (the generation failed), not not_run.
    """
    if not isinstance(expected, dict):
        raise InputError(f"expected must be a dict of prompt attributes, got {type(expected).__name__}")
    colour = expected.get("colour", expected.get("color"))
    shape = expected.get("shape")
    motion = expected.get("motion")
    motion = motion.lower() if isinstance(motion, str) else motion
    wants_fall = bool(expected.get("falls")) or motion in _FALL_WORDS
    wants_collision = bool(expected.get("collision")) or motion in _COLLIDE_WORDS
    size = expected.get("size_change", _SIZE_WORDS.get(motion) if motion else None)
    pan = expected.get("camera_pan", _PAN_WORDS.get(motion) if motion else None)
    direction = motion if motion in DIRECTIONS else None
    known = set(DIRECTIONS) | _FALL_WORDS | _COLLIDE_WORDS | set(_SIZE_WORDS) | set(_PAN_WORDS)
    if motion is not None and motion not in known:
        raise InputError(f"unknown expected motion {motion!r}; use one of {sorted(known)}")
    if shape is not None and shape not in SHAPES:
        raise InputError(f"unknown expected shape {shape!r}; use one of {list(SHAPES)}")
    if size is not None and size not in SIZE_CHANGES:
        raise InputError(f"unknown expected size_change {size!r}; use one of {list(SIZE_CHANGES)}")
    if pan is not None and pan not in PANS:
        raise InputError(f"unknown expected camera_pan {pan!r}; use one of {list(PANS)}")

    out: dict[str, MetricResult] = {}

    def binary(name: str, want: Any, got: Any, applies: bool, needs: str) -> None:
        if not applies:
            out[name] = MetricResult.not_run(name, needs=needs)
        else:
            out[name] = MetricResult(name, float(got == want), details={"expected": want, "got": got})

    binary("colour_correct", colour, analysis.main_colour, colour is not None, "an expected colour")
    binary("shape_correct", shape, analysis.main_shape, shape is not None, "an expected shape")
    binary("motion_correct", direction, analysis.motion, direction is not None,
           "an expected direction (left/right/up/down/still)")
    binary("size_change_correct", size, analysis.size_change, size is not None, "an expected size change")
    binary("camera_pan_correct", pan, analysis.camera_pan, pan is not None, "an expected camera pan")

    fall = analysis.fall
    if not wants_fall:
        out["fall_acceleration_r2"] = MetricResult.not_run("fall_acceleration_r2", needs="a falling prompt")
        out["bounce_detected"] = MetricResult.not_run("bounce_detected", needs="a falling prompt")
    else:
        if fall is None:
            out["fall_acceleration_r2"] = MetricResult.not_run(
                "fall_acceleration_r2", needs="a tracked object with >= 4 frames before its lowest point")
        else:
            # R^2 of a fit with upward curvature says nothing about a fall: report 0 then
            r2 = fall.r2 if fall.a > FALL_MIN_A else 0.0
            out["fall_acceleration_r2"] = MetricResult(
                "fall_acceleration_r2", max(0.0, r2),
                details={"a_px_per_frame2": fall.a, "r2_raw": fall.r2, "lowest_frame": fall.lowest_frame})
        out["bounce_detected"] = MetricResult(
            "bounce_detected", float(analysis.falls_and_bounces),
            details={"rebound_px": fall.rebound_px if fall else None})
    if not wants_collision:
        out["collision_met"] = MetricResult.not_run("collision_met", needs="a collision prompt")
    else:
        out["collision_met"] = MetricResult("collision_met", float(analysis.collision),
                                            details=dict(analysis.collision_details))
    return out
