"""Pure aggregation math for `openwan bench`: run reduction, means, normalisation, weighted totals, winners.

Every function takes plain numbers (``None`` = "did not run") and returns plain numbers, so suites and
tests can check results against hand-computed values without videos or metrics.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InputError


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that ran; None when none ran (a run that did not score is not a zero)."""
    ran = [float(v) for v in values if v is not None]
    return statistics.median(ran) if ran else None


def mean(values: Sequence[float | None]) -> float | None:
    ran = [float(v) for v in values if v is not None]
    return sum(ran) / len(ran) if ran else None


REDUCERS = {"median": median, "mean": mean}


def reduce_runs(runs_by_prompt: Mapping[str, Sequence[float | None]], how: str) -> dict[str, float | None]:
    """One score per prompt from its runs (samples), e.g. the median of 5 runs for motion-physics."""
    if how not in REDUCERS:
        raise InputError(f"unknown run reduction {how!r}; use one of {sorted(REDUCERS)}")
    return {prompt: REDUCERS[how](runs) for prompt, runs in runs_by_prompt.items()}


def normalise(raw: float, lo: float, hi: float, *, clip: bool) -> float:
    """Map ``raw`` from [lo, hi] to [0, 1]. VBench does not clip (a score outside its reference range
    can exceed [0, 1]); Wan-Bench and motion-physics scores clip so a dimension never dominates."""
    if hi <= lo:
        raise InputError(f"normalisation range must have hi > lo, got [{lo}, {hi}]")
    x = (raw - lo) / (hi - lo)
    return min(1.0, max(0.0, x)) if clip else x


@dataclass(frozen=True)
class WeightedTotal:
    value: float | None
    used: list[str]
    missing: list[str]

    @property
    def status(self) -> str:
        if self.value is None:
            return f"not run: needs {', '.join(self.missing)}" if self.missing else "not run: no dimensions"
        return f"partial: missing {', '.join(self.missing)}" if self.missing else "ok"


def weighted_total(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> WeightedTotal:
    """Weighted mean over the dimensions that ran: sum(w_i * s_i) / sum(w_i) for s_i not None.
    Missing dimensions are renormalised away (not counted as 0) and listed, so a total never silently
    mixes a 0 for "not measured" into a real score."""
    unknown = set(scores) - set(weights)
    if unknown:
        raise InputError(f"no weight for dimension(s) {sorted(unknown)}")
    for k, w in weights.items():
        if w < 0:
            raise InputError(f"weight of {k!r} must be >= 0, got {w}")
    used = [k for k, v in scores.items() if v is not None and weights[k] > 0]
    missing = [k for k, v in scores.items() if v is None and weights[k] > 0]
    den = sum(weights[k] for k in used)
    value = sum(weights[k] * float(scores[k]) for k in used) / den if den > 0 else None  # type: ignore[arg-type]
    return WeightedTotal(value, used, missing)


@dataclass(frozen=True)
class Winner:
    """The best model(s) of one category: several names when they are within ``margin`` of the best."""

    models: list[str]
    best: float | None
    margin: float

    @property
    def tie(self) -> bool:
        return len(self.models) > 1

    @property
    def label(self) -> str:
        if not self.models:
            return "not run"
        return f"tie: {', '.join(self.models)}" if self.tie else self.models[0]


def winner(scores: Mapping[str, float | None], margin: float) -> Winner:
    """Every model scoring >= best - margin wins (a tie when more than one); models that did not run
    cannot win. The margin is inclusive so a difference exactly equal to it is still a tie."""
    if margin < 0:
        raise InputError(f"margin must be >= 0, got {margin}")
    ran = {m: float(v) for m, v in scores.items() if v is not None}
    if not ran:
        return Winner([], None, margin)
    best = max(ran.values())
    eps = 1e-9  # 7.25 - 7.0 is not exactly 0.25 in floating point
    return Winner(sorted(m for m, v in ran.items() if v >= best - margin - eps), best, margin)


@dataclass
class Scorecard:
    """Per category × model scores, a winner per category, and each model's average over categories."""

    categories: list[str]
    models: list[str]
    scores: dict[str, dict[str, float | None]]  # category -> model -> score
    winners: dict[str, Winner]
    averages: dict[str, float | None]
    missing: dict[str, list[str]] = field(default_factory=dict)  # model -> categories without a score
    margin: float = 0.25


def scorecard(scores: Mapping[str, Mapping[str, float | None]], models: Sequence[str], margin: float) -> Scorecard:
    """Winners per category and per-model averages over the categories that model scored in."""
    cats = list(scores)
    table = {c: {m: scores[c].get(m) for m in models} for c in cats}
    winners = {c: winner(table[c], margin) for c in cats}
    averages = {m: mean([table[c][m] for c in cats]) for m in models}
    missing = {m: [c for c in cats if table[c][m] is None] for m in models}
    return Scorecard(cats, list(models), table, winners, averages, {m: v for m, v in missing.items() if v}, margin)
