"""Wan-Bench: the 14 dimensions of the Wan 2.1 technical report (§ Evaluation, "Wan-Bench").

The report names the dimensions and says the total is a weighted sum whose weights come from human
preference, but it does not publish the weights or the per-dimension scorers. So: every dimension here
names the metric that feeds it, the default weights are all 1.0 (equal weighting, our choice, not the
report's), and ``weights`` overrides them. Scores are in [0, 1]. The total is the weighted mean over the
dimensions that ran; dimensions whose metric did not run are listed as missing rather than counted as 0,
because a 0 would rank a model down for a metric we could not compute.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...errors import InputError
from ..aggregate import WeightedTotal, weighted_total
from . import Dimension, Suite

MODEL = "a model-based metric (openwan.bench.model_metrics) with its weights"


def _dims() -> list[Dimension]:
    d = Dimension
    return [
        d("large_motion", "Large motion", ("dynamic_degree",), "the dynamic_degree metric"),
        d("pixel_stability", "Pixel-level stability", ("pixel_stability",), "the pixel_stability metric"),
        d("id_consistency", "ID consistency", ("subject_consistency",), f"subject_consistency: {MODEL}"),
        d("physical_plausibility", "Physical plausibility", ("physics_judge",),
          "a VLM judge (--judge) scoring physics"),
        # Motion smoothness lives in [0.706, 0.9975] for real models (VBench NORMALIZE_DIC); stretch it
        # so the dimension is not ~1.0 for every model.
        d("smoothness", "Smoothness", ("motion_smoothness",), "the motion_smoothness metric", lo=0.706, hi=0.9975,
          source="range from VBench scripts/constant.py NORMALIZE_DIC['motion smoothness']"),
        d("image_quality", "Comprehensive image quality", ("image_quality",), "the image_quality metric"),
        d("scene_quality", "Scene quality", ("scene",), f"scene: {MODEL}"),
        d("aesthetic_quality", "Aesthetic quality", ("aesthetic_quality",), f"aesthetic_quality: {MODEL}"),
        d("single_object", "Single object accuracy", ("object_class",), f"object_class: {MODEL}"),
        d("multiple_objects", "Multiple object accuracy", ("multiple_objects",), f"multiple_objects: {MODEL}"),
        d("spatial_position", "Spatial position accuracy", ("spatial_relationship",),
          f"spatial_relationship: {MODEL}"),
        d("camera_control", "Camera control", ("camera_control",),
          "a camera_control metric comparing detected camera motion with the prompt's request"),
        d("action_following", "Action instruction following", ("human_action",), f"human_action: {MODEL}"),
        d("stylization", "Stylization", ("appearance_style",), f"appearance_style: {MODEL}"),
    ]


DEFAULT_WEIGHTS: dict[str, float] = {d.key: 1.0 for d in _dims()}  # equal: the report publishes none


def wanbench_suite(weights: Mapping[str, float] | None = None) -> Suite:
    dims = _dims()
    w = dict(DEFAULT_WEIGHTS)
    for key, value in (weights or {}).items():
        if key not in w:
            raise InputError(f"unknown Wan-Bench dimension {key!r} in weights; known: {', '.join(w)}")
        w[key] = float(value)

    def summarise(scores: Mapping[str, float | None]) -> dict[str, WeightedTotal]:
        return {"total": weighted_total(scores, w)}

    return Suite(
        "wanbench", "Wan-Bench (Wan 2.1 report): 14 dimensions, weighted total over the dimensions that ran",
        dims, summarise, run_reduce="mean", default_samples=1,
        notes=["Default weights are equal (1.0): the Wan 2.1 report does not publish its weights.",
               "The total is renormalised over the dimensions that ran; missing ones are listed.",
               f"weights: {w}"],
    )
