"""The ``shapes`` suite: ground-truth scores of a model of the procedural shapes world.

Prompts are the world's held-out (shape, colour, motion) combinations in English and Chinese
(:func:`openwan.data.synth_world.heldout_prompts`); every generated clip is read by the checker in
:mod:`openwan.bench.shapes`, so nothing here needs a learned judge.

Aggregates (each over the videos it applies to; None when no video applies):

* colour / shape accuracy: mean ``colour_correct`` / ``shape_correct`` over all videos. For a
  collision prompt, which names two objects, both colours must be the two largest objects' colours
  and each object of a named colour must have its named shape (the checker alone looks at the
  largest object only, which is either of the two at random);
* direction accuracy: "moves left/right/up/down" and "stays still" (``motion_correct``) and
  "camera pans left/right" (``camera_pan_correct``);
* fall ("falls and bounces"): the fraction with ``fall_acceleration_r2`` >= 0.9, the mean R² (a clip
  without a fittable fall counts as 0) and the fraction with ``bounce_detected``;
* collision: the fraction with ``collision_met``; size change: the fraction of grows/shrinks correct;
* adherence: per video the mean of its binary scores (colour, shape and the one that decides its
  motion, see :data:`MOTION_SCORE`); the suite's adherence is the mean over videos;
* start-side rate (a diagnostic): of the up/down/left/right videos with a clear direction, the fraction
  whose object moves away from the half of the frame it starts in. Near 100 % while direction accuracy
  stays near chance means the DiT reads the direction off the object's position, not off the words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...errors import InputError
from ..result import MetricResult
from ..shapes import ShapesAnalysis, analyse, score_prompt

SUITE_NAME = "shapes"
LANGUAGES = ("en", "zh")

# world motion name (synth_world / manifests) -> the checker's expected-motion word
MOTION_TO_CHECKER: dict[str, str] = {
    "moves left": "left", "moves right": "right", "moves up": "up", "moves down": "down",
    "stays still": "still", "falls and bounces": "falls_and_bounces", "collides": "collides",
    "grows": "grows", "shrinks": "shrinks", "camera pans left": "pan_left", "camera pans right": "pan_right",
}
# the binary score that decides whether a video shows its prompt's motion
MOTION_SCORE: dict[str, str] = {
    "moves left": "motion_correct", "moves right": "motion_correct", "moves up": "motion_correct",
    "moves down": "motion_correct", "stays still": "motion_correct",
    "camera pans left": "camera_pan_correct", "camera pans right": "camera_pan_correct",
    "falls and bounces": "bounce_detected", "collides": "collision_met",
    "grows": "size_change_correct", "shrinks": "size_change_correct",
}
DIRECTION_MOTIONS = ("moves left", "moves right", "moves up", "moves down", "stays still",
                     "camera pans left", "camera pans right")
OBJECT_MOTIONS = ("moves left", "moves right", "moves up", "moves down")
FALL_MOTIONS = ("falls and bounces",)
COLLISION_MOTIONS = ("collides",)
SIZE_MOTIONS = ("grows", "shrinks")
FALL_R2_PASS = 0.9

# Headline targets (report.md); fractions in [0, 1]. "majority" targets have no published number:
# more than half of the videos must show the event.
TARGETS: dict[str, dict[str, Any]] = {
    "colour_accuracy": {"label": "Colour accuracy", "min": 0.95, "text": ">= 95%"},
    "shape_accuracy": {"label": "Shape accuracy", "min": 0.85, "text": ">= 85%"},
    "direction_accuracy": {"label": "Direction accuracy", "min": 0.90, "text": ">= 90%"},
    "fall": {"label": "Fall + bounce", "min": FALL_R2_PASS, "bounce_min": 0.5,
             "text": "mean R² >= 0.9, bounce in >= 50%"},
    "collision_rate": {"label": "Collisions meet", "min": 0.5, "text": ">= 50% of collision videos"},
    "size_change_accuracy": {"label": "Size change", "min": None, "text": "—"},
    "adherence": {"label": "Adherence", "min": None, "text": "—"},
    "vae_psnr_db": {"label": "VAE reconstruction", "min": 30.0, "text": ">= 30 dB"},
    "guidance": {"label": "Guidance helps", "min": None, "text": "adherence(guidance > 1) > adherence(1)"},
}


@dataclass(frozen=True)
class ShapesPrompt:
    """One evaluation prompt with the attributes the checker compares against (world vocabulary)."""

    index: int  # position in the full suite list (both languages): seeds derive from it
    prompt: str
    language: str
    shape: str
    colour: str
    motion: str
    shape2: str | None = None
    colour2: str | None = None

    def __post_init__(self) -> None:
        check_motion(self.motion)

    def expected(self) -> dict[str, Any]:
        """``expected`` for :func:`openwan.bench.shapes.score_prompt` (checker vocabulary)."""
        return {"colour": self.colour, "shape": self.shape, "motion": MOTION_TO_CHECKER[self.motion]}

    @property
    def combo(self) -> str:
        """Language-free key of the prompt's (shape, colour, motion)."""
        return f"{self.colour} {self.shape} {self.motion}"

    def to_dict(self) -> dict[str, Any]:
        d = {("prompt_index" if k == "index" else k): v for k, v in asdict(self).items()}
        return {k: v for k, v in d.items() if v is not None}


def check_motion(motion: Any, where: str = "") -> str:
    """``motion`` if it is a world motion name, else an InputError naming ``where``."""
    if motion not in MOTION_TO_CHECKER:
        at = f"{where}: " if where else ""
        raise InputError(f"{at}unknown motion {motion!r}; use one of {sorted(MOTION_TO_CHECKER)}")
    return motion


def shapes_prompts(config=None, languages: Sequence[str] = LANGUAGES) -> list[ShapesPrompt]:
    """The suite's prompts: ``heldout_prompts(config)`` (default ``SynthWorldConfig()``) in ``languages``."""
    from ...data.synth_world import SynthWorldConfig, heldout_prompts

    languages = tuple(languages)
    bad = [lang for lang in languages if lang not in LANGUAGES]
    if not languages or bad or len(set(languages)) != len(languages):
        raise InputError(f"languages must be distinct values from {LANGUAGES}, got {languages!r}")
    rows = heldout_prompts(config if config is not None else SynthWorldConfig())
    return [ShapesPrompt(i, r["prompt"], r["language"], r["shape"], r["colour"], r["motion"],
                         r.get("shape2"), r.get("colour2"))
            for i, r in enumerate(rows) if r["language"] in languages]


# ----------------------------------------------------------------------------------------- one video


def _collision_objects(prompt: ShapesPrompt, analysis: ShapesAnalysis,
                       scores: dict[str, MetricResult]) -> None:
    """Colour/shape of a two-object prompt: both named objects, not just the largest one."""
    want = [(prompt.colour, prompt.shape), (prompt.colour2, prompt.shape2)]
    want = [(c, s) for c, s in want if c is not None]
    got_colours = [tr.colour for tr in analysis.tracks[:2]]
    colour_ok = all(c in got_colours for c, _ in want)
    shapes_got = {c: next((tr.shape for tr in analysis.tracks if tr.colour == c), None) for c, _ in want}
    shape_ok = all(s is None or shapes_got[c] == s for c, s in want)
    scores["colour_correct"] = MetricResult(
        "colour_correct", float(colour_ok),
        details={"expected": [c for c, _ in want], "got": got_colours, "rule": "both objects among the two largest"})
    scores["shape_correct"] = MetricResult(
        "shape_correct", float(shape_ok),
        details={"expected": {c: s for c, s in want}, "got": shapes_got,
                 "rule": "largest object of each named colour has its shape"})


def score_video(frames: np.ndarray, prompt: ShapesPrompt) -> tuple[dict[str, MetricResult], ShapesAnalysis]:
    """Checker scores (every name in SCORE_NAMES) of uint8 [T, H, W, 3] ``frames`` for ``prompt``."""
    analysis = analyse(frames)
    scores = score_prompt(analysis, prompt.expected())
    if prompt.motion in COLLISION_MOTIONS:
        _collision_objects(prompt, analysis, scores)
    if prompt.motion in OBJECT_MOTIONS:
        away = _moves_away_from_start(analysis, frames.shape[2], frames.shape[1])
        if away is not None:
            scores["moves_away_from_start"] = away
    return scores, analysis


def _moves_away_from_start(analysis: ShapesAnalysis, width: int, height: int) -> MetricResult | None:
    """1 when the main object moves away from the half of the frame it starts in (a diagnostic, not a
    target): a DiT that reads the direction off where the noise put the object, not off the words, scores
    near 1 whatever the caption says. None when the checker saw no clear up/down/left/right motion."""
    if analysis.motion not in ("left", "right", "up", "down") or not analysis.tracks:
        return None
    x0, y0 = next(b for b in analysis.tracks[0].blobs if b is not None).centroid
    if analysis.motion in ("left", "right"):
        away = "right" if x0 < width / 2 else "left"
    else:
        away = "down" if y0 < height / 2 else "up"
    return MetricResult("moves_away_from_start", float(analysis.motion == away),
                        details={"start": [round(float(x0), 2), round(float(y0), 2)], "away": away,
                                 "moved": analysis.motion})


def _value(scores: Mapping[str, Any], name: str) -> float:
    """A score as a float; a score that did not run (None / missing) counts as a failure (0)."""
    v = scores.get(name)
    if isinstance(v, MetricResult):
        v = v.value
    return 0.0 if v is None else float(v)


def adherence(motion: str, scores: Mapping[str, Any]) -> float:
    """Mean of the video's binary scores: colour, shape and its motion's deciding score."""
    check_motion(motion)
    names = ("colour_correct", "shape_correct", MOTION_SCORE[motion])
    return sum(_value(scores, n) for n in names) / len(names)


# ----------------------------------------------------------------------------------------- aggregates


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


def aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Suite aggregates of score rows ``{"motion": world motion, "scores": {name: value | None}}``.

    Values are fractions in [0, 1] (mean R² for ``fall_mean_r2``), None when no video applies;
    ``*_videos`` count the videos each aggregate is over.
    """
    for r in rows:
        check_motion(r.get("motion"))
    sc = [(r["motion"], r["scores"]) for r in rows]
    direction = [_value(s, MOTION_SCORE[m]) for m, s in sc if m in DIRECTION_MOTIONS]
    falls = [s for m, s in sc if m in FALL_MOTIONS]
    r2 = [_value(s, "fall_acceleration_r2") for s in falls]
    collisions = [_value(s, "collision_met") for m, s in sc if m in COLLISION_MOTIONS]
    sizes = [_value(s, "size_change_correct") for m, s in sc if m in SIZE_MOTIONS]
    away = [v for v in (s.get("moves_away_from_start") for m, s in sc if m in OBJECT_MOTIONS) if v is not None]
    away = [float(v.value if isinstance(v, MetricResult) else v) for v in away]
    return {
        "videos": len(sc),
        "colour_accuracy": _mean([_value(s, "colour_correct") for _, s in sc]),
        "shape_accuracy": _mean([_value(s, "shape_correct") for _, s in sc]),
        "direction_accuracy": _mean(direction), "direction_videos": len(direction),
        "fall_r2_pass_rate": _mean([float(v >= FALL_R2_PASS) for v in r2]),
        "fall_mean_r2": _mean(r2),
        "fall_bounce_rate": _mean([_value(s, "bounce_detected") for s in falls]), "fall_videos": len(falls),
        "collision_rate": _mean(collisions), "collision_videos": len(collisions),
        "size_change_accuracy": _mean(sizes), "size_change_videos": len(sizes),
        "adherence": _mean([adherence(m, s) for m, s in sc]),
        # diagnostic: object motions that move away from the half they start in (see score_video)
        "start_side_rate": _mean(away), "start_side_videos": len(away),
    }


def breakdown(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """``aggregate`` per value of ``key`` (e.g. "language", "motion"), in first-seen order."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(r)
    return {k: aggregate(v) for k, v in groups.items()}


def headline(agg: Mapping[str, Any], *, vae_psnr_db: float | None = None,
             baseline_adherence: float | None = None, main_guidance: float | None = None,
             baseline_guidance: float | None = None) -> list[dict[str, Any]]:
    """Rows ``{key, label, value, text, target, met}`` of the headline numbers against :data:`TARGETS`;
    ``met`` is None when the number was not measured or has no target."""

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{100 * v:.1f}%"

    def row(key: str, value: Any, text: str, met: bool | None) -> dict[str, Any]:
        t = TARGETS[key]
        return {"key": key, "label": t["label"], "value": value, "text": text, "target": t["text"], "met": met}

    def at_least(key: str, v: float | None) -> bool | None:
        lo = TARGETS[key]["min"]
        return None if v is None or lo is None else bool(v >= lo)

    out = [row(k, agg.get(k), pct(agg.get(k)), at_least(k, agg.get(k)))
           for k in ("colour_accuracy", "shape_accuracy", "direction_accuracy")]
    r2, bounce = agg.get("fall_mean_r2"), agg.get("fall_bounce_rate")
    fall_met = None if r2 is None else bool(r2 >= TARGETS["fall"]["min"] and bounce >= TARGETS["fall"]["bounce_min"])
    out.append(row("fall", {"mean_r2": r2, "r2_pass_rate": agg.get("fall_r2_pass_rate"), "bounce_rate": bounce},
                   "—" if r2 is None else f"R² {r2:.3f}, bounce {pct(bounce)}", fall_met))
    for k in ("collision_rate", "size_change_accuracy", "adherence"):
        out.append(row(k, agg.get(k), pct(agg.get(k)), at_least(k, agg.get(k))))
    out.append(row("vae_psnr_db", vae_psnr_db, "—" if vae_psnr_db is None else f"{vae_psnr_db:.2f} dB",
                   at_least("vae_psnr_db", vae_psnr_db)))
    main = agg.get("adherence")
    if baseline_adherence is None or main is None:
        out.append(row("guidance", None, "not measured", None))
    else:
        helps = bool(main > baseline_adherence)
        g = "" if main_guidance is None else f"{main_guidance:g}"
        b = "" if baseline_guidance is None else f"{baseline_guidance:g}"
        out.append(row("guidance", {"main": main, "baseline": baseline_adherence, "helps": helps},
                       f"{pct(main)} @ {g} vs {pct(baseline_adherence)} @ {b}", helps))
    return out


__all__ = [
    "COLLISION_MOTIONS",
    "DIRECTION_MOTIONS",
    "FALL_MOTIONS",
    "LANGUAGES",
    "MOTION_SCORE",
    "MOTION_TO_CHECKER",
    "SIZE_MOTIONS",
    "SUITE_NAME",
    "TARGETS",
    "ShapesPrompt",
    "adherence",
    "aggregate",
    "breakdown",
    "check_motion",
    "headline",
    "score_video",
    "shapes_prompts",
]
