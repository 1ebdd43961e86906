"""Training metrics: a progress bar with loss/lr/throughput, ``metrics.jsonl``, and TensorBoard when installed."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class MetricsLogger:
    """Rank 0 writes; other ranks get a logger that does nothing (so call sites need no rank checks)."""

    def __init__(self, output_dir: str | os.PathLike, *, total_steps: int, start_step: int = 0, enabled: bool = True,
                 progress: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(output_dir) / "metrics.jsonl"
        self._bar = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Append: a resumed run continues the same file; records carry their step.
        self._file = open(self.path, "a", encoding="utf-8")
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional; metrics.jsonl always has everything
                log.info("tensorboard not installed: metrics go to %s only", self.path)
            else:
                self._tb = SummaryWriter(str(Path(output_dir) / "tensorboard"))

    def step(self, step: int, postfix: dict[str, float]) -> None:
        """Advance the progress bar (every step, cheap)."""
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps({"step": step, **metrics}, ensure_ascii=False) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k, v, step)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            log.info(text)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        self._file.close()


def _fmt(v: float) -> str:
    if isinstance(v, float) and (v == 0 or math.isfinite(v) and 1e-3 <= abs(v) < 1e4):
        return f"{v:.4g}"
    return f"{v:.3e}" if isinstance(v, float) else str(v)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl; for a resumed run, a later record of a step replaces an earlier one."""
    by_step: dict[int, dict[str, Any]] = {}
    extra = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if "step" in rec and "loss" in rec:
                by_step[rec["step"]] = rec
            else:
                extra.append(rec)
    return [by_step[k] for k in sorted(by_step)] + extra
