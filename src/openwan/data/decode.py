"""Decoding training clips: probe a file, sample frames at a target frame rate, resize and centre-crop.

Videos are read with PyAV. A clip of ``num_frames`` frames at ``fps`` samples the instants
``start + i / fps`` and takes, for each, the decoded source frame whose timestamp is nearest, so a
25 fps source and a 16 fps training rate give real 16 fps motion rather than sped-up footage.
Decoding seeks to the keyframe before ``start`` and stops after the last needed frame, so a 5 s clip
from a 10 min video costs about 5 s of decoding.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .manifest import kind_of


class MediaError(InputError):
    """A media file is missing, corrupt, unreadable or too short for the requested clip."""


@dataclass(frozen=True)
class MediaInfo:
    """Size and timing of a media file. Images have ``fps == 0`` and ``num_frames == 1``.

    ``duration`` is ``num_frames / fps`` (the span the frames cover), not the container duration, which
    may include a longer audio track.
    """

    width: int
    height: int
    fps: float
    num_frames: int
    duration: float


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read size, frame rate and frame count from the file header (no full decode)."""
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"media file not found: {p}")
    if kind_of(p) == "image":
        return _probe_image(p)
    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MediaError(f"{p}: no video stream (is it an audio file?)")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate or rate <= 0:
                raise MediaError(f"{p}: the video stream has no frame rate")
            n = stream.frames
            if n <= 0:
                # Some containers (mkv, webm) do not store a frame count: count packets, no decoding.
                n = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        raise MediaError(f"cannot read video {p}: {e}") from e
    if width <= 0 or height <= 0 or n <= 0:
        raise MediaError(f"{p}: video stream has size {width}x{height} and {n} frames; the file looks corrupt")
    fps = float(rate)
    return MediaInfo(width=width, height=height, fps=fps, num_frames=n, duration=n / fps)


def _probe_image(p: Path) -> MediaInfo:
    from PIL import Image

    try:
        with Image.open(p) as img:
            img.verify()  # checks the file structure (e.g. PNG chunk CRCs) without decoding pixels
        with Image.open(p) as img:  # verify() leaves the image unusable: reopen for the header
            width, height = img.size
            # EXIF orientations 5-8 rotate by 90 degrees; load_image applies them, so report that size.
            if img.getexif().get(0x0112) in (5, 6, 7, 8):
                width, height = height, width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # SyntaxError: broken headers
        raise MediaError(f"cannot read image {p}: {e}") from e
    return MediaInfo(width=width, height=height, fps=0.0, num_frames=1, duration=0.0)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image to uint8 [1, H, W, 3] RGB (alpha dropped, EXIF rotation applied)."""
    from PIL import Image, ImageOps

    p = Path(path)
    if not p.is_file():
        raise MediaError(f"media file not found: {p}")
    try:
        with Image.open(p) as img:
            rgb = ImageOps.exif_transpose(img).convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)[None].copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise MediaError(f"cannot read image {p}: {e}") from e


def clip_span(info: MediaInfo, num_frames: int, fps: float | None) -> float:
    """Seconds of source a clip covers: from its first sampled instant to the end of its last source frame.

    A clip fits a video starting at ``s`` when ``s + clip_span(...) <= info.duration``.
    """
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    if info.fps <= 0:
        if num_frames == 1:
            return 0.0
        raise InputError(f"an image has one frame; cannot take a {num_frames}-frame clip from it")
    if fps is None:
        return num_frames / info.fps
    if fps <= 0:
        raise InputError(f"fps must be > 0 or None (consecutive source frames), got {fps}")
    return (num_frames - 1) / fps + 1.0 / info.fps


def choose_start(info: MediaInfo, num_frames: int, fps: float | None, rng: random.Random) -> float:
    """A start time drawn uniformly over the starts for which the clip fits (on source frames when fps is None)."""
    span = clip_span(info, num_frames, fps)
    slack = info.duration - span
    if slack < -1e-9:
        raise MediaError(f"video ({info.num_frames} frames, {info.duration:.3f} s at {info.fps:g} fps) is "
                         f"shorter than a {num_frames}-frame clip at {_fps_text(fps)} ({span:.3f} s)")
    if info.fps <= 0:
        return 0.0
    if fps is None:
        # Consecutive source frames: the valid first frames are 0 .. info.num_frames - num_frames.
        return rng.randrange(info.num_frames - num_frames + 1) / info.fps
    return rng.uniform(0.0, max(0.0, slack))


def decode_clip(path: str | os.PathLike, *, num_frames: int, fps: float | None, start: float = 0.0) -> np.ndarray:
    """Decode ``num_frames`` frames sampled at ``fps`` from ``start`` seconds: uint8 [F, H, W, 3].

    ``fps=None`` takes consecutive source frames beginning with the one nearest ``start``. Raises
    MediaError if the file is missing, corrupt, or has too few frames after ``start``.
    """
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    if fps is not None and not fps > 0:
        raise InputError(f"fps must be > 0 or None (consecutive source frames), got {fps}")
    if not start >= 0:
        raise InputError(f"start must be >= 0 seconds, got {start}")
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"media file not found: {p}")
    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise MediaError(f"{p}: no video stream")
            stream = container.streams.video[0]
            picked = _select(container, stream, p, num_frames, fps, start, seek=start > 0)
            if picked is None:  # the demuxer landed after the requested time: decode from the start instead
                container.seek(0, backward=True, any_frame=False, stream=stream)
                picked = _select(container, stream, p, num_frames, fps, start, seek=False)
            assert picked is not None
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError, EOFError) as e:
        raise MediaError(f"cannot decode video {p}: {e}") from e
    return np.stack(picked)


def _select(container, stream, p: Path, num_frames: int, fps: float | None, start: float,
            *, seek: bool) -> list[np.ndarray] | None:
    """Pick frames; returns None when a seek overshot ``start`` (caller retries without seeking)."""
    tb = stream.time_base
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    interval = 1.0 / float(rate) if rate else 0.0
    tolerance = 0.5 * interval + 1e-6  # a target this close past the last frame still has it as nearest
    origin = stream.start_time
    if seek:
        # Aim two frames early: the frame just before `start` may be the nearest one.
        offset = int(Fraction(max(0.0, start - 2 * interval)) / tb) + (origin or 0)
        container.seek(offset, backward=True, any_frame=False, stream=stream)

    targets = [start + i / fps for i in range(num_frames)] if fps is not None else [start]
    out: list[np.ndarray] = []
    converted: dict[int, np.ndarray] = {}  # frames picked for several targets are converted once

    def rgb(index: int, frame) -> np.ndarray:
        if index not in converted:
            converted.clear()
            converted[index] = frame.to_ndarray(format="rgb24")
        return converted[index]

    prev = None  # (decode index, time, frame) of the last frame before the next target
    for k, frame in enumerate(container.decode(stream)):
        if frame.pts is None:
            raise MediaError(f"{p}: decoded frames carry no timestamps; remux it (ffmpeg -i in -c copy out.mp4)")
        if origin is None:
            origin = frame.pts
        t = float((frame.pts - origin) * tb)
        if k == 0 and seek and t > start + tolerance:
            return None
        if fps is None and out:
            out.append(rgb(k, frame))  # consecutive frames after the first
        elif fps is None:
            if t >= start:  # first frame at or after start; the one before may be nearer
                if prev is not None and start - prev[1] <= t - start:
                    out.append(rgb(prev[0], prev[2]))
                out.append(rgb(k, frame))
        else:
            while len(out) < num_frames and targets[len(out)] <= t:
                want = targets[len(out)]
                nearest_is_prev = prev is not None and want - prev[1] <= t - want
                out.append(rgb(prev[0], prev[2]) if nearest_is_prev else rgb(k, frame))
        if len(out) >= num_frames:
            return out[:num_frames]
        prev = (k, t, frame)

    if prev is not None and len(out) < len(targets):
        # End of stream: targets within half a frame after the last frame still pick it.
        while len(out) < len(targets) and targets[len(out)] <= prev[1] + tolerance:
            out.append(rgb(prev[0], prev[2]))
    if len(out) >= num_frames:
        return out[:num_frames]
    raise _too_short(p, stream, num_frames, fps, start, interval, None if prev is None else prev[1])


def _too_short(p: Path, stream, num_frames: int, fps: float | None, start: float, interval: float,
               last_t: float | None) -> MediaError:
    have = 0 if last_t is None else round(last_t / interval) + 1 if interval else "?"
    header = f" (the header says {stream.frames})" if stream.frames and stream.frames != have else ""
    rate = f" at {1 / interval:g} fps" if interval else ""
    if fps is None:
        needed = round(start / interval) + num_frames if interval else num_frames
        what = f"{num_frames} consecutive frames from {start:.3f} s"
    else:
        end = start + (num_frames - 1) / fps
        needed = math.floor(end / interval + 0.5) + 1 if interval else num_frames
        what = f"{num_frames} frames at {fps:g} fps from {start:.3f} s (until {end:.3f} s)"
    return MediaError(f"video {p} is too short: it has {have} frames{rate}{header}, but {what} needs "
                      f"{needed} source frames")


def resize_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale uint8 [F, H, W, 3] to cover ``width`` x ``height`` (aspect kept, antialiased), centre-crop:
    returns uint8 [F, height, width, 3]."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must be uint8 [F, H, W, 3], got {frames.dtype} {frames.shape}")
    if width < 1 or height < 1:
        raise InputError(f"target size must be positive, got {width}x{height}")
    f, h, w, _ = frames.shape
    scale = max(width / w, height / h)
    # Never round below the target, so the crop always fits.
    nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
    top, left = (nh - height) // 2, (nw - width) // 2
    if (nh, nw) == (h, w):
        return np.ascontiguousarray(frames[:, top:top + height, left:left + width])
    out = np.empty((f, height, width, 3), dtype=np.uint8)
    chunk = 8  # bounds the float32 copy of long high-resolution clips
    for i in range(0, f, chunk):
        x = torch.from_numpy(np.ascontiguousarray(frames[i:i + chunk])).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        y = y[:, :, top:top + height, left:left + width]
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def _fps_text(fps: float | None) -> str:
    return "source frame rate" if fps is None else f"{fps:g} fps"
