"""Resolution/length buckets: every batch holds clips of one size, and each file goes to the bucket whose
aspect ratio is closest to its own, so crops stay small and no sample is padded.

Sizes follow the Wan VAE: width and height are multiples of 16 (8x spatial compression, then 2x2 DiT
patches) and a clip has 1 or 4n+1 frames (the causal VAE keeps the first frame and compresses the rest
4x in time).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError
from .decode import MediaInfo, clip_span

_SPEC = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?$")


@dataclass(frozen=True, order=True)
class Bucket:
    """A training shape: ``frames`` frames of ``width`` x ``height`` pixels; ``str()`` gives "832x480x81"."""

    width: int
    height: int
    frames: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}"

    @property
    def log_aspect(self) -> float:
        return math.log(self.width / self.height)


def parse_bucket(spec: str) -> Bucket:
    """Parse "WxHxF" (or "WxH" for single images) and check the sizes the VAE and DiT can take."""
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise InputError(f"bucket {spec!r}: expected WIDTHxHEIGHTxFRAMES such as 832x480x81, or WIDTHxHEIGHT "
                         "for single images")
    width, height = int(m.group(1)), int(m.group(2))
    frames = int(m.group(3)) if m.group(3) is not None else 1
    for name, v in (("width", width), ("height", height)):
        if v < 16 or v % 16:
            lo, hi = max(16, v // 16 * 16), max(16, -(-v // 16) * 16)
            near = f"{lo}" if lo == hi else f"{lo} or {hi}"
            raise InputError(f"bucket {spec!r}: {name} {v} must be a positive multiple of 16 (nearest: {near})")
    if frames != 1 and (frames < 5 or (frames - 1) % 4):
        lo = (frames - 1) // 4 * 4 + 1
        near = "1" if frames < 1 else f"{lo} or {lo + 4}"
        raise InputError(f"bucket {spec!r}: frames must be 1 or 4n+1 (the VAE compresses time 4x after the "
                         f"first frame), got {frames}; nearest: {near}")
    return Bucket(width, height, frames)


def parse_buckets(specs: str | list[str]) -> list[Bucket]:
    """Parse a comma-separated string or a list of specs; duplicates are an error."""
    items = [s for s in specs.split(",") if s.strip()] if isinstance(specs, str) else list(specs)
    buckets = [parse_bucket(s) for s in items]
    dupes = sorted({str(b) for b in buckets if buckets.count(b) > 1})
    if dupes:
        raise InputError(f"buckets listed more than once: {', '.join(dupes)}")
    if not buckets:
        raise InputError("no buckets given; pass at least one WIDTHxHEIGHTxFRAMES such as 832x480x81")
    return buckets


def assign_bucket(info: MediaInfo, kind: str, buckets: list[Bucket], fps: float | None) -> Bucket | None:
    """The bucket for a file, or None if none fits.

    Images go to 1-frame buckets; videos to multi-frame buckets whose clip (``frames`` at ``fps``, or
    consecutive source frames when ``fps`` is None) fits in the video — or, in a stage that has only
    1-frame buckets (image pre-training), to those: a video then yields one frame. Among those, the closest aspect
    ratio (by ``|log(w/h)|`` distance) wins; among equal aspect ratios, the longest clip, then the
    largest area.
    """
    if kind not in ("video", "image"):
        raise InputError(f"kind must be 'video' or 'image', got {kind!r}")
    if info.width <= 0 or info.height <= 0:
        return None
    if kind == "image":
        candidates = [b for b in buckets if b.frames == 1]
    elif info.fps <= 0:
        return None
    else:
        candidates = [b for b in buckets if b.frames > 1 and clip_span(info, b.frames, fps) <= info.duration + 1e-9]
        if all(b.frames == 1 for b in buckets):
            candidates = list(buckets)
    if not candidates:
        return None
    aspect = math.log(info.width / info.height)
    # Round the distance so buckets of the same aspect ratio tie exactly despite float noise.
    return min(candidates, key=lambda b: (round(abs(b.log_aspect - aspect), 9), -b.frames, -b.width * b.height,
                                          b.width))
