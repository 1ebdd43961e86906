"""Benchmark suites: a suite is a list of dimensions, each fed by named metrics and mapped to a score.

A dimension scores one video from that video's :class:`MetricResult`s; if a metric it needs did not run
(or is not installed), the dimension is "not run: needs …" for that video, never a number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ...errors import InputError
from ..aggregate import WeightedTotal, normalise
from ..result import MetricResult


@dataclass(frozen=True)
class PromptSpec:
    prompt: str
    category: str = ""


@dataclass(frozen=True)
class Dimension:
    """``metrics`` are all required; ``optional`` ones are passed to ``combine`` when they ran.
    The raw value (``combine`` of the metric values, or the single metric's value) is normalised from
    [lo, hi] to [0, 1] and multiplied by ``scale`` (1 for [0, 1] suites, 10 for 0–10 scores)."""

    key: str
    label: str
    metrics: tuple[str, ...]
    needs: str  # what the user must provide when a metric is not available at all
    lo: float = 0.0
    hi: float = 1.0
    clip: bool = True
    scale: float = 1.0
    group: str = ""  # VBench: "quality" or "semantic"
    optional: tuple[str, ...] = ()
    combine: Callable[[Mapping[str, float]], float] | None = None
    source: str = ""  # where the normalisation/combination comes from (shown in reports)

    def score(self, results: Mapping[str, MetricResult]) -> MetricResult:
        values: dict[str, float] = {}
        for name in self.metrics:
            r = results.get(name)
            if r is None:
                return MetricResult.not_run(self.key, self.needs, metric=name)
            if not r.ok:  # keep the metric's own reason (e.g. "needs >= 3 frames")
                return MetricResult(self.key, None, r.status, {"metric": name})
            values[name] = float(r.value)  # type: ignore[arg-type]
        for name in self.optional:
            r = results.get(name)
            if r is not None and r.ok:
                values[name] = float(r.value)  # type: ignore[arg-type]
        raw = self.combine(values) if self.combine else values[self.metrics[0]]
        value = self.scale * normalise(raw, self.lo, self.hi, clip=self.clip)
        return MetricResult(self.key, value, "ok", {"raw": raw, "inputs": values})


Summariser = Callable[[Mapping[str, float | None]], dict[str, WeightedTotal]]


@dataclass
class Suite:
    """``run_reduce`` turns a prompt's runs into one score ("median" of 5 for motion-physics); prompts
    are then averaged per category (if any) and categories per model. ``summarise`` turns a model's
    dimension scores into totals (Wan-Bench total; VBench quality/semantic/total; a category score)."""

    name: str
    description: str
    dimensions: list[Dimension]
    summarise: Summariser
    run_reduce: str = "mean"
    default_samples: int = 1
    prompts: list[PromptSpec] = field(default_factory=list)
    scale: float = 1.0
    categorised: bool = False
    notes: list[str] = field(default_factory=list)

    def metric_names(self) -> set[str]:
        return {m for d in self.dimensions for m in d.metrics + d.optional}

    def category_of(self, prompt: str) -> str | None:
        for p in self.prompts:
            if p.prompt == prompt:
                return p.category
        return None


SUITE_NAMES = ("wanbench", "vbench", "motion-physics")


def get_suite(name: str, *, weights: Mapping[str, float] | None = None) -> Suite:
    """The named suite; ``weights`` override Wan-Bench dimension weights (by dimension key)."""
    if weights and name != "wanbench":
        raise InputError(f"dimension weights can only be set for wanbench, not {name}")
    if name == "wanbench":
        from .wanbench import wanbench_suite
        return wanbench_suite(weights)
    if name == "vbench":
        from .vbench import vbench_suite
        return vbench_suite()
    if name == "motion-physics":
        from .motion_physics import motion_physics_suite
        return motion_physics_suite()
    raise InputError(f"unknown suite {name!r}; choose one of {', '.join(SUITE_NAMES)}")


__all__ = ["Dimension", "PromptSpec", "Suite", "SUITE_NAMES", "get_suite"]
