"""Bench aggregation math against hand-computed values, suites, bad inputs (no real metrics needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openwan.bench.aggregate import median, normalise, reduce_runs, scorecard, weighted_total, winner
from openwan.bench.result import MetricResult
from openwan.bench.suites import get_suite
from openwan.bench.suites.motion_physics import CATEGORIES
from openwan.bench.suites.vbench import vbench_scores
from openwan.errors import InputError


def test_median_and_run_reduction_ignore_runs_that_did_not_score():
    assert median([3.0, 1.0, 2.0, None, 10.0]) == 2.5
    assert median([None, None]) is None
    assert reduce_runs({"a": [1, 9, 5, 7, 3], "b": [None]}, "median") == {"a": 5.0, "b": None}
    with pytest.raises(InputError):
        reduce_runs({}, "max")


def test_weighted_total_renormalises_over_dimensions_that_ran():
    t = weighted_total({"a": 0.8, "b": 0.2, "c": None}, {"a": 3.0, "b": 1.0, "c": 5.0})
    assert t.value == pytest.approx((3 * 0.8 + 1 * 0.2) / 4)  # 0.65, c not counted as 0
    assert t.missing == ["c"] and t.status == "partial: missing c"
    assert weighted_total({"a": None}, {"a": 1.0}).value is None


def test_vbench_normalisation_and_quality_semantic_total_hand_values():
    # motion smoothness 0.98 -> (0.98-0.706)/(0.9975-0.706) = 0.274/0.2915
    assert normalise(0.98, 0.706, 0.9975, clip=False) == pytest.approx(0.274 / 0.2915)
    assert normalise(1.2, 0.0, 1.0, clip=False) == pytest.approx(1.2)  # VBench does not clip
    suite = get_suite("vbench")
    dims = {d.key: d for d in suite.dimensions}
    raw = {"temporal_flickering": 0.95, "motion_smoothness": 0.98, "dynamic_degree": 0.4, "scene": 0.4111}
    norm = {k: dims[k].score({dims[k].metrics[0]: MetricResult("x", v)}).value for k, v in raw.items()}
    tf = (0.95 - 0.6293) / (1 - 0.6293)
    ms = 0.274 / 0.2915
    q = (tf + ms + 0.5 * 0.4) / 2.5  # dynamic degree weighs 0.5 (VBench DIM_WEIGHT)
    sem = 0.4111 / 0.8222
    scores = {k: norm.get(k) for k in dims}
    out = vbench_scores(scores)
    assert out["quality"].value == pytest.approx(q)
    assert out["semantic"].value == pytest.approx(sem)
    assert out["total"].value == pytest.approx((4 * q + sem) / 5)
    assert "subject_consistency" in out["quality"].missing
    # with no semantic dimension the total is not run (VBench's 4:1 mix needs both)
    only_q = vbench_scores({k: (v if dims[k].group == "quality" else None) for k, v in scores.items()})
    assert only_q["total"].value is None and only_q["total"].missing == ["semantic"]


def test_wanbench_weights_and_missing_dimensions():
    suite = get_suite("wanbench", weights={"large_motion": 2.0})
    assert len(suite.dimensions) == 14
    scores = {d.key: None for d in suite.dimensions}
    scores.update(large_motion=0.9, pixel_stability=0.6)
    total = suite.summarise(scores)["total"]
    assert total.value == pytest.approx((2 * 0.9 + 0.6) / 3)
    assert len(total.missing) == 12 and "physical_plausibility" in total.missing
    with pytest.raises(InputError, match="unknown Wan-Bench dimension"):
        get_suite("wanbench", weights={"nope": 1})


def test_dimension_not_run_says_what_is_missing():
    suite = get_suite("wanbench")
    dim = next(d for d in suite.dimensions if d.key == "id_consistency")
    r = dim.score({})
    assert r.value is None and r.status.startswith("not run: needs subject_consistency")
    r2 = dim.score({"subject_consistency": MetricResult.not_run("subject_consistency", ">= 2 frames")})
    assert r2.status == "not run: needs >= 2 frames"


def test_motion_consistency_is_documented_combination():
    suite = get_suite("motion-physics")
    mc = suite.dimensions[0]
    vals = {"temporal_flickering": 1.0, "motion_smoothness": 0.706, "pixel_stability": 0.5}
    r = mc.score({k: MetricResult(k, v) for k, v in vals.items()})
    assert r.value == pytest.approx(10 * (1.0 + 0.0 + 0.5) / 3)
    r = mc.score({**{k: MetricResult(k, v) for k, v in vals.items()},
                  "subject_consistency": MetricResult("subject_consistency", 1.0)})
    assert r.value == pytest.approx(10 * 2.5 / 4)  # ID consistency joins when present
    phys = suite.dimensions[1].score({})
    assert phys.status == "not run: needs a VLM judge (--judge) or reference videos (--reference DIR)"


def test_motion_physics_prompt_set():
    assert len(CATEGORIES) == 6
    assert all(len(ps) >= 5 for ps in CATEGORIES.values())
    suite = get_suite("motion-physics")
    assert suite.run_reduce == "median" and suite.default_samples == 5
    assert suite.category_of("incense smoke rising and curling in still air") == "smoke and particles"


def test_ties_within_margin_and_scorecard_winner():
    w = winner({"A": 7.25, "B": 7.0, "C": 6.0}, 0.25)
    assert w.models == ["A", "B"] and w.tie and w.label == "tie: A, B"  # exactly the margin is a tie
    assert winner({"A": 7.26, "B": 7.0}, 0.25).label == "A"
    assert winner({"A": None, "B": None}, 0.25).label == "not run"
    card = scorecard({"walk": {"A": 8.0, "B": 6.0}, "fluid": {"A": 5.0, "B": 5.1}, "smoke": {"A": None, "B": 4.0}},
                     ["A", "B"], 0.25)
    assert card.winners["walk"].label == "A"
    assert card.winners["fluid"].label == "tie: A, B"
    assert card.winners["smoke"].label == "B"  # a model that did not run cannot win
    assert card.averages == {"A": pytest.approx(6.5), "B": pytest.approx(5.0333333)}
    assert card.missing == {"A": ["smoke"]}


# --- runner with injected fake metrics ------------------------------------------------------------------

def _fake_metrics():
    """Metric values read off the video so each test knows them: brightness of frame 0 / 255."""
    def f(name):
        return lambda v: MetricResult(name, float(v[0].mean()) / 255.0)
    return {n: f(n) for n in ("temporal_flickering", "motion_smoothness", "pixel_stability")}


def _folder(tmp_path, name, levels, prompts, extra_rows=(), stray=False, corrupt=False):
    from openwan.media import write_video

    d = tmp_path / name
    d.mkdir()
    rows = []
    for i, (prompt, runs) in enumerate(zip(prompts, levels)):
        for s, level in enumerate(runs):
            write_video(np.full((9, 48, 48, 3), level, np.uint8), d / f"v{i}_{s}.mp4")
            rows.append({"video": f"v{i}_{s}.mp4", "prompt": prompt, "sample": s})
    rows += list(extra_rows)
    if stray:
        write_video(np.zeros((9, 48, 48, 3), np.uint8), d / "stray.mp4")
    if corrupt:
        (d / "bad.mp4").write_bytes(b"not a video at all")
        rows.append({"video": "bad.mp4", "prompt": prompts[0], "sample": 9})
    (d / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_bad_inputs_are_reported_and_the_run_continues(tmp_path):
    from openwan.bench.runner import run_bench

    p = CATEGORIES["smoke and particles"][:1]
    d = _folder(tmp_path, "A", [[255, 255, 255]], p, extra_rows=[{"video": "gone.mp4", "prompt": p[0]}],
                stray=True, corrupt=True)
    r = run_bench("motion-physics", videos=[d], metrics=_fake_metrics(), progress=False)
    kinds = sorted(x.kind for x in r.problems)
    assert kinds == ["missing video", "unreadable video", "video without manifest row"]
    assert len(r.videos) == 3
    assert r.scorecard.scores["smoke and particles"]["A"] is not None


def test_median_run_counts_per_prompt(tmp_path):
    from openwan.bench.runner import run_bench

    p = CATEGORIES["human walking"][:2]
    # prompt 0 runs: levels 255, 0, 255 -> median of per-run scores; prompt 1: all 0
    d = _folder(tmp_path, "A", [[255, 0, 255], [0, 0, 0]], p)
    r = run_bench("motion-physics", videos=[d], metrics=_fake_metrics(), progress=False)
    # level 255 -> flicker 1 -> 1, smooth 1 -> 1, stability 1 -> 1: score 10; level 0 -> 0
    mc = [v.dims["motion_consistency"].value for v in r.videos]
    assert sorted(round(x, 3) for x in mc) == [0, 0, 0, 0, 10, 10]
    assert r.summaries["A"].categories["human walking"]["motion_consistency"] == pytest.approx((10 + 0) / 2, abs=0.1)


def test_unknown_prompt_without_category_is_reported(tmp_path):
    from openwan.bench.runner import run_bench

    d = _folder(tmp_path, "A", [[100], [100]], ["a cat", CATEGORIES["fluid dynamics"][0]])
    r = run_bench("motion-physics", videos=[d], metrics=_fake_metrics(), progress=False)
    assert [x.kind for x in r.problems] == ["prompt without category"]
    assert list(r.scorecard.categories) == ["fluid dynamics"]


def test_either_videos_or_model():
    from openwan.bench.runner import run_bench

    with pytest.raises(InputError, match="either --videos"):
        run_bench("vbench")
