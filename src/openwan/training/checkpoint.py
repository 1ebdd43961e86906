"""Sharded training checkpoints (torch.distributed.checkpoint) with full resume, written atomically.

Layout of ``<output_dir>/checkpoints``::

    step-00000100/            a complete checkpoint
        .metadata, *.distcp   DCP shards: model, optimizer, EMA (each rank writes its own shards)
        rank-00000.pt         per-rank state: RNG states, data position, progress (torch.save of plain data)
        COMPLETE              written last, by rank 0, after every rank finished (JSON: step, time)
    step-00000200.tmp/        a save in progress — or one that crashed: never read

A save goes to ``step-N.tmp``; only when every rank has written and ``COMPLETE`` is on disk is the
folder renamed to ``step-N`` (an atomic rename on POSIX). A crash at any point leaves either the
finished new checkpoint or an ignored ``.tmp`` next to the previous one, so resume always finds a
usable checkpoint. Folders without ``COMPLETE`` (e.g. copied by hand, half-synced) are skipped with a
warning too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from ..errors import CheckpointError

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def quiet_single_process() -> Iterator[None]:
    """DCP warns that it 'assumes' single-process use when no process group exists: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


class CheckpointManager:
    """Save and find checkpoints under ``root``. Every rank must call :meth:`save` and :meth:`load`."""

    def __init__(self, root: str | os.PathLike, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = keep

    def complete_checkpoints(self) -> list[tuple[int, Path]]:
        """(step, folder) of every complete checkpoint, oldest first; reports incomplete ones."""
        found = []
        if not self.root.is_dir():
            return found
        for p in sorted(self.root.iterdir()):
            m = _STEP_DIR.match(p.name)
            if p.name.endswith(".tmp"):
                log.warning("ignoring incomplete checkpoint %s (a save was interrupted)", p)
            elif m and p.is_dir():
                if (p / COMPLETE).is_file():
                    found.append((int(m.group(1)), p))
                else:
                    log.warning("ignoring checkpoint %s: it has no %s marker", p, COMPLETE)
        return sorted(found)

    def latest(self) -> Path | None:
        done = self.complete_checkpoints()
        return done[-1][1] if done else None

    def save(self, step: int, shared: dict[str, Any], per_rank: dict[str, Any]) -> Path:
        """Write ``shared`` (model/optimizer/EMA state; DTensor shards are written by their owners)
        with DCP and ``per_rank`` (plain data) per rank; then mark complete and rename atomically."""
        final = self.root / step_dir_name(step)
        tmp = final.with_name(final.name + ".tmp")
        rank = _rank()
        if rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            for stale in self.root.glob("step-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)
            if final.exists():  # e.g. re-saving the same step after a resume
                shutil.rmtree(final)
            tmp.mkdir(parents=True)
        _barrier()
        with quiet_single_process():
            dcp.save(shared, checkpoint_id=tmp, no_dist=not _distributed())
        rank_file = tmp / f"rank-{rank:05d}.pt"
        with open(rank_file, "wb") as f:
            torch.save(per_rank, f)
            f.flush()
            os.fsync(f.fileno())
        _barrier()
        if rank == 0:
            self._finalize(tmp, final, step)
        _barrier()
        return final

    def _finalize(self, tmp: Path, final: Path, step: int) -> None:
        world = dist.get_world_size() if _distributed() else 1
        with open(tmp / COMPLETE, "w") as f:
            json.dump({"step": step, "world_size": world, "time": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        for _, old in self.complete_checkpoints()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self, path: Path, shared: dict[str, Any]) -> dict[str, Any]:
        """Fill ``shared`` in place from ``path`` (DCP resharding handles a different world size) and
        return this rank's plain state (rank 0's when the checkpoint had fewer ranks)."""
        marker = path / COMPLETE
        if not marker.is_file():
            raise CheckpointError(f"{path} is not a complete checkpoint (no {COMPLETE} marker)")
        try:
            with quiet_single_process():
                dcp.load(shared, checkpoint_id=path, no_dist=not _distributed())
        except Exception as e:  # DCP raises plain exceptions on missing keys/shards
            raise CheckpointError(f"cannot load checkpoint {path}: {e}") from e
        rank_file = path / f"rank-{_rank():05d}.pt"
        if not rank_file.is_file():
            rank_file = path / "rank-00000.pt"
        return torch.load(rank_file, weights_only=True)


def rng_state() -> dict[str, Any]:
    """Global RNG states of this process (torch CPU/CUDA, numpy, python)."""
    import random

    import numpy as np

    _, keys, pos, has_gauss, gauss = np.random.get_state()
    # Plain tensors and numbers only, so the file loads with torch.load(weights_only=True).
    state = {"torch": torch.get_rng_state(), "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
             "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": [int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(int(x) for x in state["python"].tolist()), None))
    pos, has_gauss, gauss = state["numpy_pos"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), int(pos), int(has_gauss), float(gauss)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
