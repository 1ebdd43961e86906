"""VBench: the dimensions openwan can compute, with VBench's normalisation and Quality/Semantic weighting.

Constants are VBench's, from Vchitect/VBench scripts/constant.py (NORMALIZE_DIC, DIM_WEIGHT,
QUALITY_WEIGHT = 4, SEMANTIC_WEIGHT = 1) and scripts/cal_final_score.py: each dimension is normalised
(raw - Min) / (Max - Min) without clipping, Quality = sum(w_i * n_i) / sum(w_i) over the quality list,
Semantic likewise, Total = (4 * Quality + 1 * Semantic) / 5.

Differences from the leaderboard, stated in every report: our scorers are openwan's own (e.g.
imaging quality is the weight-free image_quality metric, not MUSIQ), the prompt set is the user's, and
Quality/Semantic are over the dimensions that ran (VBench requires all 16), so numbers are comparable
between models run here, not with published VBench scores.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..aggregate import WeightedTotal, weighted_total
from . import Dimension, Suite

# (key, label, metric, Min, Max, weight, group) -- Min/Max/weight from VBench scripts/constant.py
_TABLE = [
    ("subject_consistency", "Subject consistency", "subject_consistency", 0.1462, 1.0, 1.0, "quality"),
    ("background_consistency", "Background consistency", "background_consistency", 0.2615, 1.0, 1.0, "quality"),
    ("temporal_flickering", "Temporal flickering", "temporal_flickering", 0.6293, 1.0, 1.0, "quality"),
    ("motion_smoothness", "Motion smoothness", "motion_smoothness", 0.706, 0.9975, 1.0, "quality"),
    ("dynamic_degree", "Dynamic degree", "dynamic_degree", 0.0, 1.0, 0.5, "quality"),
    ("aesthetic_quality", "Aesthetic quality", "aesthetic_quality", 0.0, 1.0, 1.0, "quality"),
    ("imaging_quality", "Imaging quality", "image_quality", 0.0, 1.0, 1.0, "quality"),
    ("object_class", "Object class", "object_class", 0.0, 1.0, 1.0, "semantic"),
    ("multiple_objects", "Multiple objects", "multiple_objects", 0.0, 1.0, 1.0, "semantic"),
    ("human_action", "Human action", "human_action", 0.0, 1.0, 1.0, "semantic"),
    ("color", "Color", "color", 0.0, 1.0, 1.0, "semantic"),
    ("spatial_relationship", "Spatial relationship", "spatial_relationship", 0.0, 1.0, 1.0, "semantic"),
    ("scene", "Scene", "scene", 0.0, 0.8222, 1.0, "semantic"),
    ("appearance_style", "Appearance style", "appearance_style", 0.0009, 0.2855, 1.0, "semantic"),
    ("temporal_style", "Temporal style", "temporal_style", 0.0, 0.364, 1.0, "semantic"),
    ("overall_consistency", "Overall consistency", "overall_consistency", 0.0, 0.364, 1.0, "semantic"),
]
WEIGHTS = {row[0]: row[5] for row in _TABLE}
GROUPS = {row[0]: row[6] for row in _TABLE}
QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4.0, 1.0  # VBench scripts/constant.py


def _needs(metric: str) -> str:
    if metric in ("temporal_flickering", "motion_smoothness", "dynamic_degree", "image_quality"):
        return f"the {metric} metric"
    return f"{metric}: a model-based metric (openwan.bench.model_metrics) with its weights"


def vbench_scores(scores: Mapping[str, float | None]) -> dict[str, WeightedTotal]:
    """Quality, Semantic and Total from normalised dimension scores (keys as in _TABLE)."""
    quality = weighted_total({k: v for k, v in scores.items() if GROUPS[k] == "quality"},
                             {k: w for k, w in WEIGHTS.items() if GROUPS[k] == "quality"})
    semantic = weighted_total({k: v for k, v in scores.items() if GROUPS[k] == "semantic"},
                              {k: w for k, w in WEIGHTS.items() if GROUPS[k] == "semantic"})
    # Total needs both halves: VBench's 4:1 mix is meaningless with one side absent.
    total = weighted_total({"quality": quality.value, "semantic": semantic.value},
                           {"quality": QUALITY_WEIGHT, "semantic": SEMANTIC_WEIGHT})
    if total.missing:
        total = WeightedTotal(None, [], total.missing)
    return {"quality": quality, "semantic": semantic, "total": total}


def vbench_suite() -> Suite:
    dims = [Dimension(key, label, (metric,), _needs(metric), lo=lo, hi=hi, clip=False, group=group,
                      source="VBench scripts/constant.py NORMALIZE_DIC")
            for key, label, metric, lo, hi, _, group in _TABLE]
    return Suite(
        "vbench", "VBench dimensions openwan computes, VBench normalisation and (4·Quality + Semantic)/5",
        dims, vbench_scores, run_reduce="mean", default_samples=1,
        notes=["Normalisation and weights: VBench scripts/constant.py and scripts/cal_final_score.py.",
               "Scorers are openwan's (imaging quality = weight-free image_quality, not MUSIQ); Quality and "
               "Semantic are over the dimensions that ran; not comparable with the VBench leaderboard.",
               "Total is not run unless both Quality and Semantic dimensions ran."],
    )
