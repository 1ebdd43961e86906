"""The metric functions a bench run uses, by the names the suites ask for.

Every entry is ``fn(video, prompt=...) -> MetricResult``. Weight-free metrics share one optical-flow
pass per video; model-based ones come from :class:`~openwan.bench.model_metrics.ModelMetrics` (absent
weights give "not run: needs …"); judge answers (0–10) feed the Wan-Bench dimensions as score/10 and
motion-physics' physics accuracy as is; ``--reference DIR`` adds Physics-IQ motion-mask comparisons.

VBench's semantic dimensions rely on VBench's own models (GRiT, Tag2Text, ViCLIP…), so the vbench suite
reports them "not run" instead of substituting a judge on a different scale; Wan-Bench, whose models are
unpublished, uses the judge for its instruction-following dimensions (documented in the README).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .result import MetricResult

MetricFn = Callable[..., MetricResult]

# Wan-Bench dimension metric -> judge rubric (model_metrics.judge.RUBRICS keys)
_JUDGED = {"physics_judge": "judge_physical_plausibility", "object_class": "judge_object_accuracy",
           "multiple_objects": "judge_count_accuracy", "spatial_relationship": "judge_spatial_accuracy",
           "human_action": "judge_action_following", "appearance_style": "judge_stylisation"}
_UNSUPPORTED = {"scene": "a scene classifier (not supported yet)",
                "color": "VBench's GRiT colour detector (not supported)",
                "temporal_style": "VBench's ViCLIP (not supported)"}


@dataclass
class MetricOptions:
    """What the user has locally: model folders, a judge URL, reference videos."""

    clip: str | os.PathLike | None = None
    dino: str | os.PathLike | None = None
    judge: str | None = None
    judge_model: str | None = None
    judge_api_key: str | None = None
    aesthetic: str | os.PathLike | None = None  # LAION aesthetic predictor head (needs clip = ViT-L/14)
    musiq: str | os.PathLike | None = None  # MUSIQ weights (pyiqa layout): imaging quality as VBench measures it
    reference: str | os.PathLike | None = None  # folder of real videos + manifest (prompt -> video)
    device: str = "cpu"


class _SharedFlow:
    """The last video's optical flow, so the flow-based metrics of one video compute it once. It holds
    the video itself (not its id(), which a later array can reuse once this one is freed)."""

    def __init__(self) -> None:
        self._video: np.ndarray | None = None
        self._flow: np.ndarray | None = None

    def __call__(self, video: np.ndarray) -> np.ndarray:
        from .metrics import optical_flow

        if video is not self._video or self._flow is None:
            self._flow, self._video = optical_flow(video), video
        return self._flow


CAMERA_WORDS = [  # (regex on the prompt, requested camera label)
    (r"\bpan(s|ning)? (to the )?left\b", "pan_left"), (r"\bpan(s|ning)? (to the )?right\b", "pan_right"),
    (r"\btilt(s|ing)? up\b", "tilt_up"), (r"\btilt(s|ing)? down\b", "tilt_down"),
    (r"\bzoom(s|ing)? in\b", "zoom_in"), (r"\bzoom(s|ing)? out\b", "zoom_out"),
    (r"\b(static|fixed|locked[- ]off) (camera|shot)\b", "static"),
]


def requested_camera(prompt: str) -> str | None:
    for pattern, label in CAMERA_WORDS:
        if re.search(pattern, prompt.lower()):
            return label
    return None


def camera_control(video: np.ndarray, *, prompt: str = "", flow: np.ndarray | None = None) -> MetricResult:
    """1.0 when the detected camera motion is the one the prompt asks for ("pans left", "zoom in",
    "static camera", …), else 0.0; not run for prompts that request no camera motion."""
    from .metrics import camera_motion

    want = requested_camera(prompt)
    if want is None:
        return MetricResult.not_run("camera_control", "a prompt that requests a camera motion (pan/tilt/zoom/static)")
    got = camera_motion(video, flow=flow)
    if not got.ok:
        return MetricResult("camera_control", None, got.status)
    label = got.details.get("label")
    return MetricResult("camera_control", float(label == want), details={"requested": want, "detected": label})


def image_quality(video: np.ndarray) -> MetricResult:
    """NIQE mapped to [0, 1] (see metrics.quality): higher is better."""
    from .metrics import niqe

    r = niqe(video)
    if not r.ok:
        return MetricResult("image_quality", None, r.status)
    return MetricResult("image_quality", float(r.details["image_quality"]), details={"niqe": r.value})


class ReferenceVideos:
    """Real reference videos by prompt (a folder with a manifest, the format of --videos)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        from .inputs import load_video_dir

        inputs = load_video_dir(folder, "reference")
        if not inputs.items:
            raise InputError(f"--reference {folder}: no readable reference videos")
        self.by_prompt = {it.prompt: Path(it.path) for it in inputs.items}

    def get(self, prompt: str) -> np.ndarray | None:
        from ..media import read_video

        path = self.by_prompt.get(prompt)
        return None if path is None else read_video(path)[0]


def physics_iq_score(video: np.ndarray, reference: np.ndarray) -> MetricResult:
    """0–10: 10 × the mean of spatial, spatiotemporal and weighted spatial motion-mask IoU against the
    real reference (frames resampled to the generated count by nearest index)."""
    from .metrics import PHYSICS_IQ

    idx = np.linspace(0, len(reference) - 1, len(video)).round().astype(int)
    ref = reference[idx]
    parts = {k: PHYSICS_IQ[k](video, ref) for k in ("spatial_iou", "spatiotemporal_iou", "weighted_spatial_iou")}
    bad = [r.status for r in parts.values() if not r.ok]
    if bad:
        return MetricResult("physics_iq", None, bad[0])
    return MetricResult("physics_iq", 10 * float(np.mean([r.value for r in parts.values()])),
                        details={k: r.value for k, r in parts.items()})


def build_metrics(suite: str, options: MetricOptions | None = None) -> dict[str, MetricFn]:
    """Every metric name the suites use, bound to this run's models, judge and references."""
    from .metrics import _USES_FLOW, WEIGHT_FREE
    from .model_metrics import ModelMetrics

    options = options or MetricOptions()
    flow = _SharedFlow()
    fns: dict[str, MetricFn] = {}
    for name, fn in WEIGHT_FREE.items():
        if name in _USES_FLOW:
            fns[name] = (lambda f: lambda video: f(video, flow=flow(video)))(fn)
        else:
            fns[name] = fn
    fns["image_quality"] = image_quality  # NIQE-based; replaced by MUSIQ below when its weights are given
    fns["camera_control"] = lambda video, prompt="": camera_control(video, prompt=prompt, flow=flow(video))

    mm = ModelMetrics.from_options(clip=options.clip, dino=options.dino, judge=options.judge,
                                   judge_model=options.judge_model, judge_api_key=options.judge_api_key,
                                   device=options.device, aesthetic=options.aesthetic, musiq=options.musiq)

    def model_metric(source: str, name: str, scale: float = 1.0) -> MetricFn:
        def fn(video: np.ndarray, prompt: str = "") -> MetricResult:
            r = mm.run(video, prompt, [source])[source]
            value = None if r.value is None else r.value * scale
            return MetricResult(name, value, r.status, {**r.details, "source": source})
        return fn

    fns["subject_consistency"] = model_metric("id_consistency", "subject_consistency")
    fns["background_consistency"] = model_metric("clip_frame_consistency", "background_consistency")
    fns["overall_consistency"] = model_metric("clip_text_alignment", "overall_consistency")
    fns["aesthetic_quality"] = model_metric("aesthetic_quality", "aesthetic_quality")
    fns["musiq"] = model_metric("musiq", "musiq")
    if options.musiq:  # VBench's imaging quality is MUSIQ (SPAQ weights) / 100
        fns["image_quality"] = model_metric("musiq", "image_quality", scale=0.01)
    for name, need in _UNSUPPORTED.items():
        fns[name] = (lambda n, why: lambda video, prompt="": MetricResult.not_run(n, why))(name, need)
    for name, source in _JUDGED.items():
        if suite == "vbench" and name != "physics_judge":
            fns[name] = (lambda n: lambda video, prompt="": MetricResult.not_run(
                n, "VBench's own detector/classifier (not supported)"))(name)
        else:
            fns[name] = model_metric(source, name, scale=0.1)  # 0–10 -> [0, 1]

    references = ReferenceVideos(options.reference) if options.reference else None
    judge_physics = model_metric("judge_physical_plausibility", "physics_accuracy")

    def physics_accuracy(video: np.ndarray, prompt: str = "") -> MetricResult:
        """0–10: the judge's physics score and/or Physics-IQ against a reference; their mean when both ran."""
        parts = []
        judged = judge_physics(video, prompt)
        if judged.ok:
            parts.append(judged)
        ref = references.get(prompt) if references is not None else None
        if ref is not None:
            iq = physics_iq_score(video, ref)
            if iq.ok:
                parts.append(iq)
        if not parts:
            why = judged.status if options.judge else "a VLM judge (--judge URL) or reference videos (--reference DIR)"
            if references is not None and ref is None and not options.judge:
                why = f"a reference video for this prompt in {options.reference}"
            return MetricResult("physics_accuracy", None, why if why.startswith(("not run", "failed"))
                                else f"not run: needs {why}")
        return MetricResult("physics_accuracy", float(np.mean([p.value for p in parts])),
                            details={p.details.get("source", p.name): p.value for p in parts})

    fns["physics_accuracy"] = physics_accuracy
    return fns


def metric_names(fns: Mapping[str, MetricFn]) -> list[str]:
    return sorted(fns)
