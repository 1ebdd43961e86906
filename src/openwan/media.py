"""Writing generated media: H.264 MP4 (PyAV) and PNG, atomically, with generation metadata; and the
conversion between uint8 frames and the [-1, 1] tensors the VAE reads and writes.

A result file is written to a temporary name in the destination folder and renamed into place, so a
crash never leaves a half-written video under the requested name. Prompt, seed and settings go into the
container metadata (MP4 ``comment`` tag, PNG text chunk) and into a sidecar JSON next to the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .checkpoint.io import atomic_write, write_text_atomic
from .errors import InputError

if TYPE_CHECKING:
    import torch

VIDEO_SUFFIXES = (".mp4",)
IMAGE_SUFFIXES = (".png",)


def check_writable(path: str | os.PathLike, *, frames: int) -> Path:
    """Fail before any compute if ``path`` cannot be written or has the wrong suffix for ``frames``."""
    p = Path(path)
    suffix = p.suffix.lower()
    allowed = IMAGE_SUFFIXES + VIDEO_SUFFIXES if frames == 1 else VIDEO_SUFFIXES
    if suffix not in allowed:
        raise InputError(
            f"output {p} must end in {' or '.join(allowed)} for {frames} frame(s)"
            + (" (a single frame is saved as PNG)" if frames == 1 else "")
        )
    if p.is_dir():
        raise InputError(f"output {p} is a directory; give a file name such as {p / ('video' + allowed[-1])}")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".openwan-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"cannot write output {p}: {e.strerror or e} (checked before generating)") from e
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"cannot write output {p}: the existing file is read-only (checked before generating)")
    return p


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] -> float32 video [3, T, H, W] in [-1, 1] (the VAE's input range)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).contiguous().float().div_(127.5).sub_(1.0)


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """Video [3, T, H, W] in [-1, 1] (any dtype/device) -> uint8 frames [T, H, W, 3], clamped and rounded."""
    import torch

    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


VIDEO_PIX_FMTS = ("yuv420p", "yuv444p")


def write_video(frames: np.ndarray, path: str | os.PathLike, *, fps: int = 16,
                metadata: dict[str, Any] | None = None, crf: int = 18, pix_fmt: str = "yuv420p") -> Path:
    """Encode ``frames`` (uint8, [T, H, W, 3]) as H.264 MP4 at ``fps``; returns the path.

    ``pix_fmt`` "yuv420p" plays everywhere; "yuv444p" keeps full-resolution colour (no chroma
    subsampling: sharp colour edges on small frames, e.g. training clips) but some players refuse it."""
    import av

    if pix_fmt not in VIDEO_PIX_FMTS:
        raise InputError(f"pix_fmt must be one of {VIDEO_PIX_FMTS}, got {pix_fmt!r}")
    frames = _check_frames(frames)

    def encode(tmp: str) -> None:
        with av.open(tmp, mode="w", format="mp4") as container:
            if metadata:
                container.metadata["comment"] = json.dumps(metadata, ensure_ascii=False)
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = pix_fmt
            stream.options = {"crf": str(crf), "preset": "medium"}
            for rgb in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return atomic_write(path, encode, suffix=".mp4")


def write_image(frame: np.ndarray, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None) -> Path:
    """Save one uint8 [H, W, 3] frame as PNG with ``metadata`` in a text chunk; returns the path."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    frame = _check_frames(frame[None])[0]
    info = PngInfo()
    if metadata:
        info.add_itxt("openwan", json.dumps(metadata, ensure_ascii=False))
    return atomic_write(path, lambda tmp: Image.fromarray(frame).save(tmp, format="PNG", pnginfo=info), suffix=".png")


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def write_sidecar(path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    return write_text_atomic(sidecar_path(path), json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, str]]:
    """Decode a video file to uint8 [T, H, W, 3] and its container metadata."""
    import av

    try:
        with av.open(str(path)) as container:
            meta = dict(container.metadata)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as e:
        raise InputError(f"cannot read video {path}: {e}") from e
    if not frames:
        raise InputError(f"video {path} has no frames")
    return np.stack(frames), meta


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    return np.ascontiguousarray(frames)
