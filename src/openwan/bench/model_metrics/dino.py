"""DINO-based identity (subject) consistency: does the main subject keep its appearance over time?

DINO features are sensitive to object identity rather than semantics, which is why VBench uses them
for subject consistency. Weights are a local transformers folder (ViT, e.g. facebook/dino-vitb16, or
DINOv2), loaded with ``local_files_only=True``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openwan.bench.model_metrics.frames import (
    check_video,
    first_and_previous_consistency,
)
from openwan.bench.result import MetricResult
from openwan.errors import InputError

DINO_NEEDS = "DINO weights (--dino PATH)"
# Model types whose last_hidden_state[:, 0] is the CLS token the metric is defined on.
CLS_MODEL_TYPES = ("vit", "dinov2", "dinov2_with_registers")


@dataclass
class DinoScorer:
    model: Any
    processor: Any
    device: torch.device
    batch_size: int = 32

    @classmethod
    def from_path(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu",
                  batch_size: int = 32) -> DinoScorer:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        folder = Path(path)
        if not folder.is_dir():
            raise InputError(f"--dino {folder}: not a directory (expected a transformers ViT/DINOv2 folder "
                             "with config.json, weights and preprocessor_config.json)")
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            if config.model_type not in CLS_MODEL_TYPES:
                raise InputError(f"--dino {folder}: model type {config.model_type!r} is not supported; "
                                 f"expected one of {', '.join(CLS_MODEL_TYPES)}")
            model = AutoModel.from_pretrained(folder, local_files_only=True)
            processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"--dino {folder}: could not load a model and image processor: {e}") from e
        dev = torch.device(device)
        return cls(model.eval().to(dev), processor, dev, batch_size)

    @torch.no_grad()
    def cls_features(self, frames: np.ndarray) -> torch.Tensor:
        """[N, H, W, 3] uint8 -> [N, D] normalised CLS features (final layer, after the model's norm)."""
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            batch = [f for f in frames[start:start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            out = self.model(pixel_values=pixels.to(self.device, self.model.dtype))
            # Not pooler_output: ViT's pooler is an extra dense+tanh head, not the DINO feature.
            chunks.append(out.last_hidden_state[:, 0].float().cpu())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)


def id_consistency(video: np.ndarray, scorer: DinoScorer, *, name: str = "id_consistency") -> MetricResult:
    """VBench "subject consistency": DINO CLS features of every frame; for each frame t >= 1 the mean
    of cos(f_t, f_0) and cos(f_t, f_{t-1}) (clamped at 0), averaged over t. 1.0 = unchanged subject."""
    video = check_video(video)
    if len(video) < 2:
        return MetricResult.not_run(name, ">= 2 frames", frames=len(video))
    score, per_frame = first_and_previous_consistency(scorer.cls_features(video))
    return MetricResult(name, score, details={"frames": len(video), "per_frame": per_frame})
