"""CLIP-based metrics: text alignment (prompt vs. frames) and frame-to-frame (scene) consistency.

Weights are a local transformers CLIP folder (e.g. a downloaded ``openai/clip-vit-large-patch14``),
loaded with ``local_files_only=True``: benchmarks never download anything behind the user's back.
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
    model_output_features,
    sample_indices,
)
from openwan.bench.result import MetricResult
from openwan.errors import InputError

CLIP_NEEDS = "CLIP weights (--clip PATH)"
# Frames compared to the prompt: spread over the whole clip, enough to cover its content while
# keeping the cost independent of the video length (VBench's overall consistency also uses 8).
TEXT_ALIGNMENT_FRAMES = 8


@dataclass
class ClipScorer:
    """A loaded CLIP model and its processor; embeddings are L2-normalised float32 on CPU."""

    model: Any
    processor: Any
    device: torch.device
    batch_size: int = 32

    @classmethod
    def from_path(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu",
                  batch_size: int = 32) -> ClipScorer:
        from transformers import AutoProcessor, CLIPModel

        folder = Path(path)
        if not folder.is_dir():
            raise InputError(f"--clip {folder}: not a directory (expected a transformers CLIP folder "
                             "with config.json, weights and processor files)")
        try:
            model = CLIPModel.from_pretrained(folder, local_files_only=True)
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise InputError(f"--clip {folder}: could not load a CLIP model and processor: {e}") from e
        dev = torch.device(device)
        return cls(model.eval().to(dev), processor, dev, batch_size)

    @torch.no_grad()
    def image_features(self, frames: np.ndarray) -> torch.Tensor:
        """[N, H, W, 3] uint8 -> [N, D] normalised image embeddings."""
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            batch = [f for f in frames[start:start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            out = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
            chunks.append(model_output_features(out).float().cpu())
        return torch.nn.functional.normalize(torch.cat(chunks), dim=-1)

    @torch.no_grad()
    def text_features(self, text: str) -> torch.Tensor:
        """[D] normalised text embedding; prompts longer than CLIP's context (77 tokens) are truncated."""
        max_len = self.model.config.text_config.max_position_embeddings
        tokens = self.processor(text=[text], return_tensors="pt", padding=True, truncation=True,
                                max_length=max_len)
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        out = self.model.get_text_features(**tokens)
        return torch.nn.functional.normalize(model_output_features(out).float().cpu()[0], dim=-1)


def clip_text_alignment(video: np.ndarray, prompt: str, scorer: ClipScorer, *,
                        frames: int = TEXT_ALIGNMENT_FRAMES, name: str = "clip_text_alignment") -> MetricResult:
    """Mean cosine similarity between the prompt embedding and the image embeddings of ``frames``
    frames sampled evenly from first to last (all frames if the video is shorter). In [-1, 1];
    raw CLIP cosines, not rescaled (CLIPScore's 2.5x factor is left to reports)."""
    video = check_video(video)
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("text alignment needs a non-empty prompt")
    idx = sample_indices(len(video), frames)
    sims = scorer.image_features(video[idx]) @ scorer.text_features(prompt)
    return MetricResult(name, float(sims.mean()), details={"frames": idx, "per_frame": sims.tolist()})


def clip_frame_consistency(video: np.ndarray, scorer: ClipScorer, *,
                           name: str = "clip_frame_consistency") -> MetricResult:
    """VBench "background consistency": CLIP image embeddings of every frame; for each frame t >= 1 the
    mean of cos(f_t, f_0) and cos(f_t, f_{t-1}) (clamped at 0), averaged over t. 1.0 = static scene.
    Used as the scene-consistency metric."""
    video = check_video(video)
    if len(video) < 2:
        return MetricResult.not_run(name, ">= 2 frames", frames=len(video))
    score, per_frame = first_and_previous_consistency(scorer.image_features(video))
    return MetricResult(name, score, details={"frames": len(video), "per_frame": per_frame})
