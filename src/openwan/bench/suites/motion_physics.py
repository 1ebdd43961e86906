"""Motion-physics: six motion categories, >= 5 prompts each, 5 runs per prompt, the median run counts.

Scores are 0–10:
* motion consistency = 10 × the mean of the weight-free temporal metrics, each first mapped to [0, 1]
  with VBench's reference range (scripts/constant.py NORMALIZE_DIC, clipped): temporal_flickering
  [0.6293, 1], motion_smoothness [0.706, 0.9975], pixel_stability (already [0, 1]) and, when a
  subject-consistency model ran, subject_consistency [0.1462, 1]. Equal weights: no published
  reference weights them, and equal weights keep any one metric from dominating.
* physics accuracy = a 0–10 judgement ("physics_accuracy" metric) from a VLM judge or a comparison
  with reference videos; without either it is "not run".
A category's score is the mean of the dimensions that ran; the winner per category is every model
within the margin of the best (a tie when several).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..aggregate import WeightedTotal, normalise, weighted_total
from . import Dimension, PromptSpec, Suite

CATEGORIES: dict[str, list[str]] = {
    "human walking": [
        "a woman in a red dress walking down a cobblestone street",
        "an old man with a cane walking slowly across a park, pigeons scattering",
        "a child running along a sandy beach, footprints forming in the wet sand",
        "a soldier marching in step on a parade ground, arms swinging",
        "a hiker climbing a rocky mountain trail with a heavy backpack",
        "a model walking toward the camera on a runway, full body shot",
    ],
    "fluid dynamics": [
        "a glass of water tipped over on a wooden table, spilling and pooling",
        "honey being poured from a spoon into a cup of tea, folding as it lands",
        "ocean waves crashing against black rocks, white foam spraying",
        "milk poured into black coffee, swirling clouds spreading through the cup",
        "a waterfall plunging into a clear pool, ripples spreading outward",
        "rain drops falling into a puddle on asphalt, close-up, concentric ripples",
    ],
    "object collision": [
        "a bowling ball hitting ten pins in slow motion",
        "two billiard balls colliding on a green felt table, one spinning away",
        "a glass vase falling off a shelf and shattering on a tiled floor",
        "a soccer ball striking the crossbar and bouncing down onto the grass",
        "a row of dominoes toppling one after another across a wooden floor",
        "a basketball bouncing three times on a gym floor and rolling to a stop",
    ],
    "camera + subject motion": [
        "a tracking shot of a cyclist on a forest path, leaves blowing",
        "a drone shot following a red car along a coastal road at sunset",
        "a handheld camera following a dog running through a field of tall grass",
        "a slow dolly-in on a chef tossing vegetables in a flaming wok",
        "an orbiting shot around a skateboarder performing a kickflip in a skatepark",
        "a camera panning left to follow a horse galloping along a riverbank",
    ],
    "smoke and particles": [
        "incense smoke rising and curling in still air",
        "sparks flying from a welder's torch in a dark workshop",
        "snowflakes drifting down past a streetlamp at night",
        "dust kicked up behind a pickup truck on a dry dirt road",
        "steam rising from a hot cup of coffee by a sunlit window",
        "a campfire crackling at night, embers floating upward",
    ],
    "multi-character interaction": [
        "two people at a café table passing a coffee cup",
        "two children tossing a red ball back and forth in a backyard",
        "a couple dancing a waltz in an empty ballroom",
        "two boxers sparring in a ring, one blocking a punch",
        "a waiter handing a plate to a seated customer in a busy restaurant",
        "three friends clinking glasses together at a dinner table",
    ],
}

RUNS_PER_PROMPT = 5
DEFAULT_MARGIN = 0.25  # points on the 0–10 scale; differences below this are within run-to-run noise

# VBench scripts/constant.py NORMALIZE_DIC reference ranges, used to put each metric on [0, 1]
_RANGES = {"temporal_flickering": (0.6293, 1.0), "motion_smoothness": (0.706, 0.9975),
           "pixel_stability": (0.0, 1.0), "subject_consistency": (0.1462, 1.0)}


def motion_consistency(values: Mapping[str, float]) -> float:
    """Mean of the available temporal metrics on [0, 1] (see module docstring); times 10 by the dimension."""
    parts = [normalise(v, *_RANGES[k], clip=True) for k, v in values.items() if k in _RANGES]
    return sum(parts) / len(parts)


def category_score(scores: Mapping[str, float | None]) -> dict[str, WeightedTotal]:
    return {"overall": weighted_total(scores, {"motion_consistency": 1.0, "physics_accuracy": 1.0})}


def motion_physics_suite() -> Suite:
    dims = [
        Dimension("motion_consistency", "Motion consistency",
                  ("temporal_flickering", "motion_smoothness", "pixel_stability"),
                  "the weight-free temporal metrics (temporal_flickering, motion_smoothness, pixel_stability)",
                  scale=10.0, optional=("subject_consistency",), combine=motion_consistency,
                  source="mean of VBench-range-normalised temporal metrics"),
        Dimension("physics_accuracy", "Physics accuracy", ("physics_accuracy",),
                  "a VLM judge (--judge) or reference videos (--reference DIR)", lo=0.0, hi=10.0, scale=10.0),
    ]
    prompts = [PromptSpec(p, c) for c, ps in CATEGORIES.items() for p in ps]
    return Suite(
        "motion-physics", "Six motion categories, median of 5 runs per prompt, 0–10 scorecard",
        dims, category_score, run_reduce="median", default_samples=RUNS_PER_PROMPT, prompts=prompts,
        scale=10.0, categorised=True,
        notes=["Per prompt the median of its runs counts; prompts are averaged per category, categories "
               "per model.",
               "Motion consistency = 10 × mean of temporal_flickering, motion_smoothness, pixel_stability "
               "(and subject_consistency when available), each normalised to VBench's reference range.",
               "A category score is the mean of the dimensions that ran."],
    )
