"""Aesthetic quality: the LAION aesthetic predictor on CLIP image embeddings (VBench's aesthetic_quality).

The predictor is a head over L2-normalised CLIP ViT-L/14 image embeddings that outputs a 1–10 rating:
either the linear head VBench uses (``sa_0_4_vit_l_14_linear.pth``: ``weight [1, 768]``, ``bias [1]``) or
the MLP of improved-aesthetic-predictor (``layers.{0,2,4,6,7}``: 768→1024→128→64→16→1). Both load from a
local file (``--aesthetic PATH``, with ``--clip`` giving the CLIP model); VBench reports the mean rating over
frames divided by 10.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from openwan.bench.model_metrics.clip import ClipScorer
from openwan.bench.model_metrics.frames import check_video, sample_indices
from openwan.bench.result import MetricResult
from openwan.errors import InputError

AESTHETIC_NEEDS = "LAION aesthetic predictor weights (--aesthetic PATH) and CLIP ViT-L/14 (--clip PATH)"
_MLP = (1024, 128, 64, 16)


def _build_head(sd: dict[str, torch.Tensor], path: Path) -> nn.Module:
    if set(sd) == {"weight", "bias"} and sd["weight"].ndim == 2 and sd["weight"].shape[0] == 1:
        head = nn.Linear(sd["weight"].shape[1], 1)
    elif "layers.0.weight" in sd:
        dims = [sd["layers.0.weight"].shape[1], *_MLP]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            mods += [nn.Linear(a, b)] + ([nn.Dropout(0.0)] if i < 3 else [])
        mods.append(nn.Linear(dims[-1], 1))
        head = nn.Module()
        head.layers = nn.Sequential(*mods)
        head.forward = lambda x: head.layers(x)  # type: ignore[method-assign]
    else:
        raise InputError(f"{path}: not a LAION aesthetic predictor (expected weight/bias of a Linear(768, 1) or "
                         f"layers.N.* of the MLP); keys: {sorted(sd)[:6]}")
    try:
        head.load_state_dict(sd)
    except RuntimeError as e:
        raise InputError(f"{path}: aesthetic predictor weights do not fit: {e}") from e
    return head.eval()


class AestheticScorer:
    def __init__(self, clip: ClipScorer, head: nn.Module) -> None:
        self.clip, self.head = clip, head

    @classmethod
    def from_path(cls, path: str | os.PathLike, clip: ClipScorer | None) -> AestheticScorer:
        p = Path(path)
        if clip is None:
            raise InputError(f"--aesthetic {p} needs --clip PATH (the CLIP ViT-L/14 it was trained on)")
        if not p.is_file():
            raise InputError(f"--aesthetic {p}: file not found")
        sd = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        head = _build_head(dict(sd), p)
        width = next(iter(head.parameters())).shape[1]
        probe = clip.image_features(np.zeros((1, 32, 32, 3), np.uint8))
        if probe.shape[1] != width:
            raise InputError(f"--aesthetic {p} expects {width}-d CLIP embeddings but --clip gives "
                             f"{probe.shape[1]}-d (use CLIP ViT-L/14)")
        return cls(clip, head)


@torch.no_grad()
def aesthetic_quality(video: np.ndarray, scorer: AestheticScorer, *, frames: int = 8) -> MetricResult:
    """Mean predicted rating over ``frames`` evenly spaced frames, divided by 10 (VBench's scale)."""
    video = check_video(video)
    idx = sample_indices(len(video), frames)
    ratings = scorer.head(scorer.clip.image_features(video[idx])).squeeze(-1)
    return MetricResult("aesthetic_quality", float(ratings.mean()) / 10,
                        details={"ratings": [round(float(r), 4) for r in ratings], "frames": idx})
