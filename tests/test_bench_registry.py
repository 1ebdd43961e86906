"""The real metric table of `openwan bench`: weight-free metrics with one flow pass, camera control from
the prompt, Physics-IQ physics accuracy against reference videos, and honest "not run" statuses."""

from __future__ import annotations

import json

import numpy as np
from test_bench_report import _model_dir

from openwan.bench.registry import MetricOptions, build_metrics, camera_control, requested_camera
from openwan.bench.runner import run_bench


def _pan(direction: int, frames: int = 9, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    texture = (rng.random((size, size * 2)) * 255).astype(np.uint8)
    texture = np.repeat(np.repeat(texture[::4, ::4], 4, 0), 4, 1)  # blocky: trackable
    frames_ = [texture[:, 40 + direction * 3 * t: 40 + direction * 3 * t + size] for t in range(frames)]
    return np.stack([np.stack([f] * 3, -1) for f in frames_])


def test_camera_control_compares_detected_motion_with_the_prompt():
    assert requested_camera("The camera pans left over a valley") == "pan_left"
    assert requested_camera("a cat sleeping") is None
    # Content moving right in the image = the camera panning left.
    video = _pan(-1)
    assert camera_control(video, prompt="the camera pans left across a field").value == 1.0
    assert camera_control(video, prompt="the camera pans right across a field").value == 0.0
    assert camera_control(video, prompt="a quiet field").status.startswith("not run: needs a prompt that requests")


def test_missing_models_and_judge_are_reported_not_scored():
    fns = build_metrics("wanbench")
    video = _pan(1)
    for name, need in [("subject_consistency", "DINO weights"), ("background_consistency", "CLIP weights"),
                       ("physics_judge", "a VLM judge"), ("aesthetic_quality", "aesthetic predictor weights")]:
        r = fns[name](video, prompt="a field")
        assert r.value is None and r.status.startswith("not run: needs") and need in r.status, (name, r.status)
    assert fns["physics_accuracy"](video, prompt="x").status == (
        "not run: needs a VLM judge (--judge URL) or reference videos (--reference DIR)")
    assert 0 <= fns["temporal_flickering"](video).value <= 1


def test_motion_physics_with_reference_videos_scores_physics_accuracy(tmp_path):
    a = _model_dir(tmp_path, "model_a", speed=2)
    b = _model_dir(tmp_path, "model_b", speed=5)
    ref = _model_dir(tmp_path, "reference", speed=2)  # real footage stand-in: moves like model A
    result = run_bench("motion-physics", videos=[a, b], out=tmp_path / "out", progress=False,
                       options=MetricOptions(reference=ref))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report  # written
    phys = {m: result.summaries[m].dims["physics_accuracy"] for m in result.models}
    assert all(r.ok for r in phys.values()), {m: r.status for m, r in phys.items()}
    assert phys["model_a"].value > phys["model_b"].value  # A moves like the reference
    cons = {m: result.summaries[m].dims["motion_consistency"] for m in result.models}
    assert all(r.ok and 0 <= r.value <= 10 for r in cons.values())


def test_bench_generates_with_a_model_records_seeds_and_rescoring_the_folder_agrees(tmp_path, tiny_official):
    from openwan.bench.inputs import read_prompts

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball rolls\na blue cube spins\n")
    assert [p.prompt for p in read_prompts(prompts)] == ["a red ball rolls", "a blue cube spins"]
    kw = dict(width=64, height=64, frames=9, steps=2)
    result = run_bench("vbench", model=tiny_official, samples=2, prompts=prompts, out=tmp_path / "out",
                       progress=False, seed=5, **kw)
    assert len(result.videos) == 4
    rows = [json.loads(x) for x in (tmp_path / "out" / "videos" / "tiny-official" / "manifest.jsonl")
            .read_text().splitlines()]
    assert sorted(r["seed"] for r in rows) == [5, 6, 1005, 1006]  # seed + 1000·prompt + sample
    # The written folder re-scores to the same numbers with --videos.
    again = run_bench("vbench", videos=[tmp_path / "out" / "videos" / "tiny-official"], progress=False)
    a = result.summaries["tiny-official"].dims["temporal_flickering"].value
    assert a is not None and a == again.summaries["tiny-official"].dims["temporal_flickering"].value


def test_musiq_weights_replace_niqe_for_image_quality(tmp_path):
    """With --musiq, imaging quality is MUSIQ / 100 (VBench's definition); without, the NIQE mapping."""
    import torch
    from test_bench_musiq import SMALL

    from openwan.bench.model_metrics.musiq import Musiq, MusiqScorer, musiq_quality

    torch.manual_seed(0)
    # The released head count (6) and scales (224, 384) that the CLI assumes, at a tiny width.
    small = {**SMALL, "hidden_size": 36, "num_heads": 6}
    torch.save(Musiq(**small).state_dict(), tmp_path / "musiq.pth")
    video = _pan(1)
    fns = build_metrics("vbench", MetricOptions(musiq=tmp_path / "musiq.pth"))
    r = fns["image_quality"](video)
    expected = musiq_quality(video, MusiqScorer.from_path(tmp_path / "musiq.pth"))
    assert r.ok and r.details["source"] == "musiq"
    assert abs(r.value - expected.value / 100) < 1e-6
    assert build_metrics("vbench")["image_quality"](video).details.get("niqe") is not None or \
        build_metrics("vbench")["image_quality"](video).status.startswith("not run")


def test_shared_flow_is_never_reused_for_a_different_video():
    """The flow memo must not serve one video's flow to the next same-shaped video, even when the first
    is freed and the second lands at the same address (id() reuse)."""
    fns = build_metrics("vbench")
    moving = fns["motion_magnitude"](_pan(1)).value  # the temporary array is freed right after
    assert moving > 1
    for _ in range(5):  # fresh same-shape static videos; any of them may reuse the freed address
        static = np.repeat(_pan(1)[:1], 9, axis=0)
        assert fns["motion_magnitude"](static).value < 0.1
