"""Model-based metrics (CLIP, DINO, VLM judge), run only when the user supplies weights or a judge.

A metric whose model was not given is reported as "not run: needs ...", never as a number.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openwan.bench.model_metrics.aesthetic import AESTHETIC_NEEDS, AestheticScorer, aesthetic_quality
from openwan.bench.model_metrics.clip import (
    CLIP_NEEDS,
    ClipScorer,
    clip_frame_consistency,
    clip_text_alignment,
)
from openwan.bench.model_metrics.dino import DINO_NEEDS, DinoScorer, id_consistency
from openwan.bench.model_metrics.judge import (
    JUDGE_NEEDS,
    RUBRICS,
    HTTPJudge,
    Judge,
    JudgeError,
    judge_video,
    parse_score,
)
from openwan.bench.model_metrics.musiq import MUSIQ_NEEDS, MusiqScorer, musiq_quality
from openwan.bench.result import MetricResult
from openwan.errors import InputError

# metric name -> which scorer it needs
CLIP_METRICS = ("clip_text_alignment", "clip_frame_consistency", "scene_consistency")
DINO_METRICS = ("id_consistency",)
JUDGE_METRICS = tuple(f"judge_{d}" for d in RUBRICS)
MODEL_METRIC_NAMES = CLIP_METRICS + DINO_METRICS + JUDGE_METRICS + ("aesthetic_quality", "musiq")
PROMPT_METRICS = ("clip_text_alignment",) + JUDGE_METRICS


@dataclass
class ModelMetrics:
    """Optional scorers; any of them may be None, which turns its metrics into "not run" results."""

    clip: ClipScorer | None = None
    dino: DinoScorer | None = None
    judge: Judge | None = None
    aesthetic: AestheticScorer | None = None
    musiq: MusiqScorer | None = None

    @classmethod
    def from_options(cls, *, clip: str | os.PathLike | None = None, dino: str | os.PathLike | None = None,
                     judge: str | None = None, judge_model: str | None = None, judge_api_key: str | None = None,
                     judge_timeout: float = 120.0, device: str = "cpu",
                     aesthetic: str | os.PathLike | None = None,
                     musiq: str | os.PathLike | None = None) -> ModelMetrics:
        """Build from CLI-style options. An option left out means "not run"; an option given but
        unusable (missing folder, bad URL) raises InputError rather than silently skipping the metric."""
        judge_obj: Judge | None = None
        if judge:
            if not judge.startswith(("http://", "https://")):
                hint = " (a local path)" if Path(judge).exists() else ""
                raise InputError(f"--judge {judge!r}{hint}: only OpenAI-compatible HTTP judges are supported; "
                                 "serve the model with e.g. vLLM or llama.cpp and pass its URL, "
                                 "e.g. http://localhost:8000/v1")
            judge_obj = HTTPJudge(judge, judge_model or "", api_key=judge_api_key, timeout=judge_timeout)
        clip_scorer = ClipScorer.from_path(clip, device=device) if clip else None
        return cls(
            clip=clip_scorer,
            dino=DinoScorer.from_path(dino, device=device) if dino else None,
            judge=judge_obj,
            aesthetic=AestheticScorer.from_path(aesthetic, clip_scorer) if aesthetic else None,
            musiq=MusiqScorer.from_path(musiq, device=device) if musiq else None,
        )

    def run(self, video: np.ndarray, prompt: str | None, names: Iterable[str]) -> dict[str, MetricResult]:
        names = list(names)
        unknown = [n for n in names if n not in MODEL_METRIC_NAMES]
        if unknown:
            raise InputError(f"unknown model metric(s) {', '.join(unknown)}; "
                             f"available: {', '.join(MODEL_METRIC_NAMES)}")
        return {name: self._run_one(video, prompt, name) for name in names}

    def _run_one(self, video: np.ndarray, prompt: str | None, name: str) -> MetricResult:
        if name in CLIP_METRICS and self.clip is None:
            return MetricResult.not_run(name, CLIP_NEEDS)
        if name in DINO_METRICS and self.dino is None:
            return MetricResult.not_run(name, DINO_NEEDS)
        if name in JUDGE_METRICS and self.judge is None:
            return MetricResult.not_run(name, JUDGE_NEEDS)
        if name == "musiq":
            return (musiq_quality(video, self.musiq) if self.musiq is not None
                    else MetricResult.not_run(name, MUSIQ_NEEDS))
        if name == "aesthetic_quality":
            return (aesthetic_quality(video, self.aesthetic) if self.aesthetic is not None
                    else MetricResult.not_run(name, AESTHETIC_NEEDS))
        if name in PROMPT_METRICS and not (prompt and prompt.strip()):
            return MetricResult.not_run(name, "a prompt")
        if name == "clip_text_alignment":
            return clip_text_alignment(video, prompt, self.clip)
        if name in ("clip_frame_consistency", "scene_consistency"):
            return clip_frame_consistency(video, self.clip, name=name)
        if name == "id_consistency":
            return id_consistency(video, self.dino)
        return judge_video(video, prompt, name.removeprefix("judge_"), self.judge, name=name)


__all__ = [
    "CLIP_METRICS", "DINO_METRICS", "JUDGE_METRICS", "MODEL_METRIC_NAMES", "RUBRICS",
    "ClipScorer", "DinoScorer", "HTTPJudge", "Judge", "JudgeError", "ModelMetrics",
    "clip_frame_consistency", "clip_text_alignment", "id_consistency", "judge_video", "parse_score",
]
