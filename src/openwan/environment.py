"""What a run was made with, beyond its config: library versions, the openwan source commit, the machine.

Two runs of the same config on the same code can still differ when a library does. For example, PyAV
wheels bundle their own FFmpeg, so the mp4 bytes of rendered training clips follow the installed ``av``.
``openwan recipe`` appends one :func:`environment_info` line per invocation to
``<output_dir>/environment.jsonl``, and every training run (``openwan train``, or a recipe's VAE and DiT
steps) one per start or resume to its own output folder's, so two run folders can be compared afterwards.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("openwan", "torch", "numpy", "av", "safetensors", "transformers", "sentencepiece", "opencv-python-headless")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _source_commit() -> dict[str, Any] | None:
    """The git commit of the openwan source tree in use and whether it has uncommitted changes; None outside
    a git checkout (an installed wheel) or without git."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "uncommitted_changes": bool(status.strip())}


def environment_info() -> dict[str, Any]:
    """Versions of Python and the libraries that shape a run's numbers, the FFmpeg inside PyAV, the openwan
    source commit, and the machine (CPU, cores, torch threads)."""
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }
    try:
        import av

        info["ffmpeg"] = {lib: ".".join(map(str, v)) for lib, v in av.library_versions.items()}
    except ImportError:
        info["ffmpeg"] = None
    info["source"] = _source_commit()
    return info


def record_environment(path: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """Append ``environment_info()`` (plus ``extra`` and the time) as one JSON line to ``path``."""
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, **extra, **environment_info()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row
