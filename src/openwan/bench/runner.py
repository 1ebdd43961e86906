"""`run_bench`: score every video with the suite's metrics, aggregate per model, write the reports."""

from __future__ import annotations

import base64
import inspect
import io
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, OpenWanError
from .aggregate import Scorecard, WeightedTotal, mean, reduce_runs, scorecard
from .inputs import BenchInputs, InputProblem, VideoItem, generate_videos, load_video_dir, read_prompts
from .result import MetricResult
from .suites import Suite, get_suite

MetricFn = Callable[..., MetricResult]
DEFAULT_MARGIN = {"motion-physics": 0.25}  # 0–10 points; [0, 1] suites use 0.01 (the same 2.5 % of range)
THUMBS = 4


@dataclass
class VideoRecord:
    item: VideoItem
    metrics: dict[str, MetricResult]
    dims: dict[str, MetricResult]
    thumbnails: list[str] = field(default_factory=list)  # base64 JPEG, for the HTML frame strip


@dataclass
class ModelSummary:
    dims: dict[str, MetricResult]  # model-level dimension scores (value None + status when not run)
    totals: dict[str, WeightedTotal]
    categories: dict[str, dict[str, float | None]] = field(default_factory=dict)  # category -> dim -> score


@dataclass
class BenchResult:
    suite: Suite
    models: list[str]
    videos: list[VideoRecord]
    summaries: dict[str, ModelSummary]
    scorecard: Scorecard
    problems: list[InputProblem]
    files: dict[str, Path] = field(default_factory=dict)


def default_metrics(suite: str = "", options=None) -> dict[str, MetricFn]:
    """Every metric the suites name, bound to the user's local models/judge/references (see registry)."""
    from .registry import build_metrics

    return build_metrics(suite, options)


def _call(fn: MetricFn, name: str, video: np.ndarray, prompt: str) -> MetricResult:
    try:
        takes_prompt = "prompt" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_prompt = False
    try:
        r = fn(video, prompt=prompt) if takes_prompt else fn(video)
    except OpenWanError as e:  # a bad video for this metric: report it, score the rest
        return MetricResult(name, None, f"failed: {e}")
    return r if r.name == name else MetricResult(name, r.value, r.status, r.details)


def _thumbnails(video: np.ndarray, n: int = THUMBS, height: int = 72) -> list[str]:
    from PIL import Image

    out = []
    for t in np.linspace(0, len(video) - 1, min(n, len(video))).round().astype(int):
        im = Image.fromarray(video[t])
        im = im.resize((max(1, round(im.width * height / im.height)), height))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def score_videos(suite: Suite, items: Sequence[VideoItem], metrics: Mapping[str, MetricFn], *,
                 progress: bool = True, read: Callable[[Path], np.ndarray] | None = None
                 ) -> tuple[list[VideoRecord], list[InputProblem]]:
    """Decode each video, run the metrics the suite needs, score its dimensions. Unreadable videos are
    reported and skipped."""
    from tqdm import tqdm

    if read is None:
        from ..media import read_video
        read = lambda p: read_video(p)[0]  # noqa: E731
    wanted = sorted(suite.metric_names() & set(metrics))
    records, problems = [], []
    for item in tqdm(items, desc=f"bench {suite.name}", unit="video", disable=not progress):
        try:
            video = read(item.path)
        except OpenWanError as e:
            problems.append(InputProblem("unreadable video", str(item.path), str(e), item.model))
            continue
        results = {name: _call(metrics[name], name, video, item.prompt) for name in wanted}
        dims = {d.key: d.score(results) for d in suite.dimensions}
        records.append(VideoRecord(item, results, dims, _thumbnails(video)))
    return records, problems


def _status(statuses: list[str]) -> str:
    return Counter(statuses).most_common(1)[0][0] if statuses else "not run: no videos"


def summarise(suite: Suite, records: Sequence[VideoRecord], models: Sequence[str], margin: float
              ) -> tuple[dict[str, ModelSummary], Scorecard]:
    """Per dimension: runs of a prompt → ``suite.run_reduce`` → mean over prompts per category → mean over
    categories (one implicit category for uncategorised suites)."""
    summaries: dict[str, ModelSummary] = {}
    for model in models:
        recs = [r for r in records if r.item.model == model]
        dims: dict[str, MetricResult] = {}
        per_cat: dict[str, dict[str, float | None]] = defaultdict(dict)
        for d in suite.dimensions:
            runs: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
            for r in recs:
                runs[r.item.category if suite.categorised else ""][r.item.prompt].append(r.dims[d.key].value)
            cat_scores = {c: mean(list(reduce_runs(p, suite.run_reduce).values())) for c, p in runs.items()}
            for c, v in cat_scores.items():
                per_cat[c][d.key] = v
            value = mean(list(cat_scores.values()))
            not_ran = [r.dims[d.key].status for r in recs if not r.dims[d.key].ok]
            details = {"videos": len(recs), "videos_not_run": len(not_ran)}
            dims[d.key] = MetricResult(d.key, value, "ok" if value is not None else _status(not_ran), details)
        totals = suite.summarise({k: v.value for k, v in dims.items()})
        cats = {c: per_cat[c] for c in sorted(per_cat)} if suite.categorised else {}
        summaries[model] = ModelSummary(dims, totals, cats)
    if suite.categorised:
        order = list(dict.fromkeys([p.category for p in suite.prompts]
                                   + sorted({c for s in summaries.values() for c in s.categories})))
        table = {c: {m: (suite.summarise(summaries[m].categories[c])["overall"].value
                         if c in summaries[m].categories else None) for m in models} for c in order}
        table = {c: row for c, row in table.items() if any(c in summaries[m].categories for m in models)}
    else:  # rows are dimensions: a winner per dimension
        table = {d.key: {m: summaries[m].dims[d.key].value for m in models} for d in suite.dimensions}
    return summaries, scorecard(table, models, margin)


def run_bench(suite: str | Suite, *, videos: Sequence[str | os.PathLike | tuple[str | os.PathLike, str]] = (),
              model: str | os.PathLike | None = None, samples: int | None = None,
              prompts: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
              margin: float | None = None, weights: Mapping[str, float] | None = None,
              metrics: Mapping[str, MetricFn] | None = None, seed: int = 0, progress: bool = True,
              options=None, **generate_kwargs) -> BenchResult:
    """Mirror of ``openwan bench``: score folders of videos (``videos``: DIR or (DIR, name)) or generate with
    ``model``; with ``out`` writes report.json, report.csv, videos.csv and report.html there.
    ``options`` (:class:`~openwan.bench.registry.MetricOptions`): local CLIP/DINO folders, a judge URL,
    reference videos; ``metrics`` replaces the whole metric table (tests)."""
    s = suite if isinstance(suite, Suite) else get_suite(suite, weights=weights)
    if bool(videos) == (model is not None):
        raise InputError("give either --videos DIR (one or more) or --model PATH, not both and not neither")
    if margin is None:
        margin = DEFAULT_MARGIN.get(s.name, 0.01)
    inputs = BenchInputs()
    if model is not None:
        if out is None:
            raise InputError("--model needs --out DIR to write the generated videos to")
        specs = read_prompts(prompts) if prompts else s.prompts
        if not specs:
            raise InputError(f"suite {s.name} has no built-in prompts; give --prompts FILE")
        inputs.extend(generate_videos(model, specs, samples or s.default_samples, out, seed=seed,
                                      **generate_kwargs))
    else:
        if prompts or samples:
            raise InputError("--prompts/--samples apply to --model generation, not to --videos")
        for v in videos:
            d, name = (v if isinstance(v, tuple) else (v, None))
            inputs.extend(load_video_dir(d, name))
    items = []
    for it in inputs.items:
        if s.categorised and not it.category:
            cat = s.category_of(it.prompt)
            if cat is None:
                inputs.problems.append(InputProblem(
                    "prompt without category", str(it.path),
                    f"prompt {it.prompt!r} is not in the {s.name} prompt set and its row has no \"category\"",
                    it.model))
                continue
            it = VideoItem(it.path, it.model, it.prompt, it.sample, cat, it.seed)
        items.append(it)
    models = list(dict.fromkeys(i.model for i in inputs.items))
    if not models:
        raise InputError("no videos to score: " + "; ".join(p.message for p in inputs.problems[:5]))
    records, problems = score_videos(s, items, metrics if metrics is not None else default_metrics(s.name, options),
                                     progress=progress)
    summaries, card = summarise(s, records, models, margin)
    result = BenchResult(s, models, records, summaries, card, inputs.problems + problems)
    if out is not None:
        from .report import write_reports
        result.files = write_reports(result, out)
    return result
