"""`openwan bench shapes`: suite mapping and aggregation on ground-truth renders and hand-made rows, the
runner end to end with a tiny recipe-trained model, re-scoring a videos folder, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHORT_SHAPES_RECIPE_ARGS, torch_threads

from openwan.bench.suites.shapes import (
    DIRECTION_MOTIONS,
    MOTION_SCORE,
    MOTION_TO_CHECKER,
    ShapesPrompt,
    adherence,
    aggregate,
    breakdown,
    headline,
    score_video,
    shapes_prompts,
)
from openwan.data.synth_captions import MOTIONS
from openwan.data.synth_world import (
    BACKGROUNDS,
    SIZES,
    ClipSpec,
    render_clip,
)
from openwan.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread here: with 2 threads on 2 busy cores, the tiny recipe and sampling run ~5x slower."""
    with torch_threads(1):
        yield


def _oracle(p: ShapesPrompt, k: int) -> np.ndarray:
    """A ground-truth render of what prompt ``p`` asks for: the perfect "model"."""
    spec = ClipSpec(shape=p.shape, colour=p.colour, size=SIZES[k % 2], motion=p.motion,
                    background=BACKGROUNDS[k % len(BACKGROUNDS)], seed=k, shape2=p.shape2, colour2=p.colour2,
                    size2=SIZES[(k // 2) % 2] if p.shape2 else None)
    return render_clip(spec)[0]


def _prompt(text: str) -> ShapesPrompt:
    return next(p for p in shapes_prompts() if p.prompt == text)


# ----------------------------------------------------------------------------------------- suite definition


def test_prompts_and_motion_mapping() -> None:
    from openwan.bench.shapes import analyse, score_prompt

    prompts = shapes_prompts()
    assert len(prompts) == 24 and [p.index for p in prompts] == list(range(24))
    assert sum(p.language == "zh" for p in prompts) == 12
    en = shapes_prompts(languages=("en",))
    assert len(en) == 12 and all(p.language == "en" for p in en) and en[1].index == 2  # indices (seeds) stay put
    assert set(MOTION_TO_CHECKER) == set(MOTIONS) == set(MOTION_SCORE)
    assert MOTION_TO_CHECKER["moves left"] == "left" and MOTION_TO_CHECKER["stays still"] == "still"
    assert MOTION_TO_CHECKER["camera pans left"] == "pan_left"
    still = analyse(_oracle(_prompt("a green circle stays still"), 0))
    for motion in MOTIONS:  # the checker accepts every mapped word and scores the deciding metric
        p = ShapesPrompt(0, "x", "en", "circle", "red", motion, "square" if motion == "collides" else None,
                         "blue" if motion == "collides" else None)
        assert score_prompt(still, p.expected())[MOTION_SCORE[motion]].ok
    with pytest.raises(InputError, match="languages"):
        shapes_prompts(languages=("fr",))
    with pytest.raises(InputError, match="unknown motion 'spins'"):
        ShapesPrompt(0, "x", "en", "circle", "red", "spins")


def test_oracle_ground_truth_renders_score_high() -> None:
    rows = []
    for p in shapes_prompts():
        for s in range(2):
            scores, _ = score_video(_oracle(p, 2 * p.index + s), p)
            rows.append({"motion": p.motion, "language": p.language, "scores": {k: r.value for k, r in scores.items()}})
    agg = aggregate(rows)
    assert agg["videos"] == 48 and agg["direction_videos"] == 28 and agg["fall_videos"] == 8
    assert agg["collision_videos"] == 4 and agg["size_change_videos"] == 8
    # what the checker reads off true renders (deterministic): everything right, including falls whose
    # lowest sampled point is at a later bounce (the fit stops at the first impact)
    assert agg["colour_accuracy"] == 1.0 and agg["shape_accuracy"] == 1.0
    assert agg["direction_accuracy"] == 1.0 and agg["collision_rate"] == 1.0 and agg["size_change_accuracy"] == 1.0
    assert agg["fall_bounce_rate"] == 1.0 and agg["fall_r2_pass_rate"] == 1.0
    assert agg["adherence"] >= 0.95
    assert set(breakdown(rows, "language")) == {"en", "zh"}


def test_the_checker_reads_train_split_renders_and_fast_pans_right() -> None:
    """Beyond the held-out prompts above: the first 40 train-split clips (other shapes, colours, sizes and walls)
    and 10 camera pans at 2 px per frame (the recipe's extra DiT data), each scored against its own attributes.
    Every check must read right and every fall fit to R² >= 0.95; ``moves_away_from_start`` is a diagnostic,
    not a check, and is left out."""
    from openwan.bench.shapes import SCORE_NAMES
    from openwan.data.synth_world import SynthWorldConfig, caption_for, sample_spec

    pans = SynthWorldConfig(pan_speed=2, motions=("camera pans left", "camera pans right"))
    misses, read = [], 0
    for config, clips in ((SynthWorldConfig(), 40), (pans, 10)):
        for i in range(clips):
            spec = sample_spec(config, i, "train")
            truth = ShapesPrompt(i, caption_for(spec, "en", 0), "en", spec.shape, spec.colour, spec.motion,
                                 spec.shape2, spec.colour2)
            scores, _ = score_video(render_clip(spec)[0], truth)
            for name in SCORE_NAMES:
                value = scores[name].value
                read += value is not None
                if value is not None and value < (0.95 if name == "fall_acceleration_r2" else 1.0):
                    misses.append((config.pan_speed, i, spec.motion, name, value))
    assert not misses, misses
    assert read >= 50 * 2  # colour and shape at least, on every clip


def test_wrong_video_scores_zero_on_the_wrong_attribute() -> None:
    p = _prompt("a green square moves to the left")
    right = ShapesPrompt(0, "x", "en", "square", "green", "moves right")
    scores, _ = score_video(_oracle(right, 1), p)  # a green square moving RIGHT
    assert scores["motion_correct"].value == 0.0
    assert scores["colour_correct"].value == 1.0 and scores["shape_correct"].value == 1.0
    assert adherence(p.motion, scores) == pytest.approx(2 / 3)
    red = ShapesPrompt(0, "x", "en", "square", "red", "moves left")
    scores, _ = score_video(_oracle(red, 1), p)  # a RED square moving left
    assert scores["colour_correct"].value == 0.0 and scores["motion_correct"].value == 1.0
    # collisions name two objects: a wrong partner colour fails colour_correct
    c = _prompt("an orange square and a cyan triangle collide")
    wrong = ShapesPrompt(0, "x", "en", "square", "orange", "collides", "triangle", "purple")
    scores, _ = score_video(_oracle(wrong, 0), c)
    assert scores["colour_correct"].value == 0.0 and scores["collision_met"].value == 1.0
    scores, _ = score_video(_oracle(c, 0), c)
    assert scores["colour_correct"].value == 1.0 and scores["shape_correct"].value == 1.0


def test_start_side_diagnostic_tells_position_driven_motion_from_word_driven() -> None:
    """moves_away_from_start is 1 when the object moves away from the half it starts in, whatever the
    prompt; the suite's start_side_rate averages it over up/down/left/right videos with a clear direction."""
    right = ShapesPrompt(0, "x", "en", "circle", "red", "moves right")
    left = ShapesPrompt(0, "x", "en", "circle", "red", "moves left")
    by_side = {}
    for seed in range(40):  # right movers of the world: some start left of the centre, some right of it
        frames, truth = render_clip(ClipSpec(shape="circle", colour="red", size="small", motion="moves right",
                                             background="dark grey", seed=seed))
        by_side.setdefault(truth["objects"][0]["centroids"][0][0] < 32, frames)
        if len(by_side) == 2:
            break
    for starts_left, frames in by_side.items():
        for prompt in (right, left):  # the diagnostic reads the video, not the words
            scores, _ = score_video(frames, prompt)
            assert scores["moves_away_from_start"].value == float(starts_left)
    still = ShapesPrompt(0, "x", "en", "circle", "red", "stays still")
    assert "moves_away_from_start" not in score_video(by_side[True], still)[0]
    rows = [{"motion": "moves right", "scores": {"moves_away_from_start": 1.0}},
            {"motion": "moves up", "scores": {"moves_away_from_start": 0.0}},
            {"motion": "moves left", "scores": {}},  # no clear direction: not counted
            {"motion": "stays still", "scores": {"motion_correct": 1.0}}]
    a = aggregate(rows)
    assert a["start_side_rate"] == 0.5 and a["start_side_videos"] == 2
    assert aggregate(rows[2:])["start_side_rate"] is None


def test_aggregation_on_hand_made_rows() -> None:
    def row(motion, lang="en", **s):
        return {"motion": motion, "language": lang, "scores": s}

    rows = [
        row("moves left", colour_correct=1.0, shape_correct=1.0, motion_correct=1.0),
        row("stays still", colour_correct=1.0, shape_correct=0.0, motion_correct=0.0),
        row("camera pans right", "zh", colour_correct=0.0, shape_correct=1.0, camera_pan_correct=1.0),
        row("falls and bounces", colour_correct=1.0, shape_correct=1.0, fall_acceleration_r2=0.95,
            bounce_detected=1.0),
        row("falls and bounces", "zh", colour_correct=1.0, shape_correct=0.0, fall_acceleration_r2=None,
            bounce_detected=0.0),
        row("collides", colour_correct=1.0, shape_correct=1.0, collision_met=0.0),
        row("grows", "zh", colour_correct=0.0, shape_correct=0.0, size_change_correct=1.0),
    ]
    a = aggregate(rows)
    assert a["videos"] == 7
    assert a["colour_accuracy"] == pytest.approx(5 / 7) and a["shape_accuracy"] == pytest.approx(4 / 7)
    assert a["direction_accuracy"] == pytest.approx(2 / 3) and a["direction_videos"] == 3
    assert a["fall_r2_pass_rate"] == 0.5 and a["fall_mean_r2"] == pytest.approx(0.475)  # no fit counts as 0
    assert a["fall_bounce_rate"] == 0.5 and a["fall_videos"] == 2
    assert a["collision_rate"] == 0.0 and a["collision_videos"] == 1
    assert a["size_change_accuracy"] == 1.0 and a["size_change_videos"] == 1
    # per video: 1, 1/3, 2/3, 1, 1/3, 2/3, 1/3
    assert a["adherence"] == pytest.approx(13 / 21)
    by_lang = breakdown(rows, "language")
    assert by_lang["zh"]["videos"] == 3 and by_lang["zh"]["colour_accuracy"] == pytest.approx(1 / 3)
    assert by_lang["en"]["direction_accuracy"] == 0.5
    empty = aggregate([])
    assert empty["videos"] == 0 and empty["colour_accuracy"] is None and empty["adherence"] is None
    assert set(DIRECTION_MOTIONS) == {m for m in MOTIONS if "moves" in m or "pans" in m or m == "stays still"}

    rows_ok = {"colour_accuracy": 0.96, "shape_accuracy": 0.8, "direction_accuracy": 0.9, "fall_mean_r2": 0.93,
               "fall_bounce_rate": 0.75, "fall_r2_pass_rate": 0.75, "collision_rate": 0.5,
               "size_change_accuracy": 1.0, "adherence": 0.8}
    met = {r["key"]: r["met"] for r in headline(rows_ok, vae_psnr_db=31.0, baseline_adherence=0.5,
                                                 main_guidance=4.0, baseline_guidance=1.0)}
    assert met == {"colour_accuracy": True, "shape_accuracy": False, "direction_accuracy": True, "fall": True,
                   "collision_rate": True, "size_change_accuracy": None, "adherence": None, "vae_psnr_db": True,
                   "guidance": True}
    met = {r["key"]: r["met"] for r in headline(rows_ok)}
    assert met["vae_psnr_db"] is None and met["guidance"] is None
    with pytest.raises(InputError, match="unknown motion"):
        aggregate([row("spins")])


# ----------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A shapes-world model from the real recipe, trained for a handful of steps (~15 s)."""
    from openwan.cli import main

    out = tmp_path_factory.mktemp("shapes-recipe")
    recipe = REPO / "configs/shapes-world/recipe.toml"
    assert main(["recipe", str(recipe), "--set", f"output_dir={json.dumps(str(out))}", *SHORT_SHAPES_RECIPE_ARGS]) == 0
    return out / "model"


def test_run_shapes_bench_end_to_end_and_rescore(tiny_model, tmp_path, capsys) -> None:
    from PIL import Image

    from openwan.bench.shapes_bench import run_shapes_bench, score_shapes_videos
    from openwan.cli import main

    out = tmp_path / "bench"
    r = run_shapes_bench(tiny_model, out=out, samples=1, vae_clips=2, sensitivity_clips=1, languages=("en",),
                         max_prompts=3, steps=4, shift=5.0, guidance_interval=(0.2, 1.0), solver="euler",
                         progress=False)
    for name in ("report.json", "report.md", "grid.png", "grid.gif"):
        assert (out / name).is_file(), name
    main_dir, base_dir = out / "videos" / "guidance-4", out / "videos" / "guidance-1"
    rows = [json.loads(ln) for ln in (main_dir / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["seed"] for row in rows] == [0, 2000, 4000]  # seed + 1000 * prompt index (en = even indices)
    assert [row["motion"] for row in rows] == ["falls and bounces", "moves left", "moves right"]
    assert all(row["guidance"] == 4.0 and row["language"] == "en" and (main_dir / row["video"]).is_file()
               for row in rows)
    assert len(list(base_dir.glob("*.mp4"))) == 3
    # steps, shift, solver and the guidance interval reach the sampler: the first video is exactly a direct
    # Euler generation at shift 5, not one at shift 3 or with the default UniPC
    from openwan import load_pipeline

    pipe = load_pipeline(tiny_model)
    assert pipe.defaults.shift == 3.0
    saved = np.load(main_dir / rows[0]["frames"])["frames"]
    at = {(sh, solver): np.asarray(pipe.generate(rows[0]["prompt"], seed=0, guidance=4.0, steps=4, shift=sh,
                                                 solver=solver, guidance_interval=(0.2, 1.0), progress=False).frames)
          for sh, solver in ((5.0, "euler"), (3.0, "euler"), (5.0, "unipc"))}
    np.testing.assert_array_equal(saved, at[5.0, "euler"])
    assert not np.array_equal(saved, at[3.0, "euler"]) and not np.array_equal(saved, at[5.0, "unipc"])

    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    s = rep["settings"]
    assert (s["model"], s["steps"], s["shift"], s["guidance"], s["samples"], s["seed"]) == (
        str(tiny_model), 4, 5.0, 4.0, 1, 0)
    assert s["guidance_interval"] == [0.2, 1.0] and s["solver"] == "euler"
    assert rep["main"]["aggregates"]["videos"] == 3 and rep["baseline"]["guidance"] == 1.0
    assert set(rep["main"]["languages"]) == {"en"}
    assert set(rep["main"]["motions"]) == {"falls and bounces", "moves left", "moves right"}
    v0 = rep["main"]["videos"][0]
    assert v0["seed"] == 0 and v0["source"] == "memory" and set(v0["scores"]) >= {"colour_correct", "bounce_detected"}
    cmp = rep["guidance_comparison"]
    assert isinstance(cmp["guidance_helps"], bool) and cmp["baseline_adherence"] is not None
    assert cmp["guidance_helps"] == (cmp["main_adherence"] > cmp["baseline_adherence"]) == r.guidance_helps
    vae = rep["vae"]
    assert len(vae["clips"]) == 2
    assert vae["mean_psnr_db"] == pytest.approx(np.mean([c["psnr_db"] for c in vae["clips"]]))
    assert 0 < vae["mean_psnr_db"] < 100
    assert vae["checker_aggregates"]["videos"] == 2 and all("shape_correct" in c["scores"] for c in vae["clips"])
    sens = rep["prompt_sensitivity"]
    assert set(sens["attributes"]) == {"colour", "shape", "motion"} and len(sens["clips"]) == 3
    assert sens["attributes"]["colour"]["increase"] == pytest.approx(r.sensitivity.by_attribute()["colour"]["increase"])
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| Colour accuracy |" in md and ">= 30 dB" in md and "Guidance helps" in md
    assert "shift 5.0 · solver euler" in md
    assert "## Prompt sensitivity" in md and "| motion | 1 |" in md
    assert "## What the VAE lets through" in md
    assert "| metric | renders | VAE reconstructions | generated videos |" in md
    assert "| shape | 100.0% |" in md  # the checker reads both held-out renders' shapes right
    with Image.open(out / "grid.png") as im:
        assert im.width > 5 * 128 and im.height >= 3 * 128
    with Image.open(out / "grid.gif") as im:
        assert im.n_frames == 17

    # re-score the written folder through the CLI: the saved frames give the same numbers
    out2 = tmp_path / "rescore"
    assert main(["bench", "shapes", "--videos", str(out / "videos"), "--out", str(out2), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Colour accuracy" in printed and "report.json" in printed
    rep2 = json.loads((out2 / "report.json").read_text(encoding="utf-8"))
    assert rep2["main"]["aggregates"] == rep["main"]["aggregates"]
    assert rep2["baseline"]["aggregates"] == rep["baseline"]["aggregates"]
    assert [v["scores"] for v in rep2["main"]["videos"]] == [v["scores"] for v in rep["main"]["videos"]]
    assert [v["seed"] for v in rep2["main"]["videos"]] == [0, 2000, 4000]
    assert rep2["main"]["guidance"] == 4.0 and rep2["vae"]["mean_psnr_db"] is None

    # without the saved frames the MP4s are decoded and scored (H.264 may move borderline scores)
    mp4_only = tmp_path / "mp4-only"
    shutil.copytree(main_dir, mp4_only)
    for f in mp4_only.glob("*.npz"):
        f.unlink()
    r3 = score_shapes_videos(mp4_only, progress=False)
    assert {v.source for v in r3.main.videos} == {"mp4"} and r3.baseline is None
    assert r3.main.aggregates["videos"] == 3 and any("MP4" in n for n in r3.notes)


# ----------------------------------------------------------------------------------------- bad input


def test_bad_input(tmp_path, capsys) -> None:
    from openwan.bench.shapes_bench import run_shapes_bench, score_shapes_videos
    from openwan.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"{empty}.*manifest.jsonl"):
        score_shapes_videos(empty)
    assert main(["bench", "shapes", "--videos", str(empty), "--out", str(tmp_path / "o")]) == 1
    assert str(empty) in capsys.readouterr().err
    with pytest.raises(InputError, match="not a directory"):
        score_shapes_videos(tmp_path / "nope")

    d = tmp_path / "vids"
    d.mkdir()
    frames = _oracle(_prompt("a green circle stays still"), 0)
    np.savez_compressed(d / "a.npz", frames=frames)
    manifest = d / "manifest.jsonl"
    manifest.write_text(json.dumps({"video": "a.mp4", "frames": "a.npz", "prompt": "a thing spins",
                                    "shape": "circle", "colour": "green", "motion": "spins"}) + "\n")
    with pytest.raises(InputError, match=f"{manifest}:1.*unknown motion 'spins'"):
        score_shapes_videos(d)
    manifest.write_text(json.dumps({"video": "a.mp4", "prompt": "a custom prompt"}) + "\n")
    with pytest.raises(InputError, match=f"{manifest}:1.*not a shapes-suite prompt"):
        score_shapes_videos(d)
    manifest.write_text(json.dumps({"video": "missing.mp4", "prompt": "a green circle stays still"}) + "\n")
    with pytest.raises(InputError, match=f"{manifest}:1.*does not exist"):
        score_shapes_videos(d)
    # a suite prompt needs no attributes in its row; a frames file is scored as is
    row = {"video": "a.mp4", "frames": "a.npz", "prompt": "a green circle stays still"}
    manifest.write_text(json.dumps(row) + "\n")
    r = score_shapes_videos(d, progress=False)
    assert r.main.videos[0].source == "npz" and r.main.aggregates["adherence"] == 1.0

    # arguments are checked before any model is loaded (this model path does not exist)
    for kw, msg in (({"samples": 0}, "samples"), ({"languages": ("fr",)}, "languages"),
                    ({"guidance": -1.0}, "guidance"), ({"vae_clips": -2}, "vae_clips"),
                    ({"sensitivity_clips": -1}, "sensitivity_clips"), ({"shift": 0.0}, "shift"),
                    ({"steps": 0}, "steps"), ({"guidance_interval": (0.9, 0.1)}, "guidance interval"),
                    ({"solver": "heun"}, "solver")):
        with pytest.raises(InputError, match=msg):
            run_shapes_bench(tmp_path / "no-model", out=tmp_path / "o", **kw)
    with pytest.raises(SystemExit):
        main(["bench", "shapes", "--baseline-guidance", "abc"])
    assert main(["bench", "wanbench", "--videos", str(d), "--guidance", "2"]) == 1
    assert "only apply to the shapes suite" in capsys.readouterr().err
    assert main(["bench", "shapes", "--videos", str(d), "--samples", "2"]) == 1
    assert "apply to generation" in capsys.readouterr().err
    assert main(["bench", "shapes", "--videos", str(d), "--shift", "5"]) == 1
    assert "--shift apply to generation" in capsys.readouterr().err
    assert main(["bench", "shapes", "--videos", str(d), "--solver", "euler"]) == 1
    assert "--solver apply to generation" in capsys.readouterr().err
    assert main(["bench", "shapes", "--videos", str(d), "--guidance-interval", "0.3", "1"]) == 1
    assert "--guidance-interval apply to generation" in capsys.readouterr().err
    assert main(["bench", "wanbench", "--videos", str(d), "--steps", "10"]) == 1
    assert "--steps only apply to the shapes suite" in capsys.readouterr().err
    assert main(["bench", "shapes", "--videos", str(d), "--sensitivity-clips", "4"]) == 1
    assert "--sensitivity-clips apply to generation" in capsys.readouterr().err
    assert main(["bench", "wanbench", "--videos", str(d), "--sensitivity-clips", "4"]) == 1
    assert "--sensitivity-clips only apply to the shapes suite" in capsys.readouterr().err


def test_cjk_font_check_and_label_fallback() -> None:
    from openwan.bench.shapes_grid import _is_cjk_font, _label

    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if dejavu.is_file():  # Latin-only: its "tofu" boxes for two Chinese characters are identical
        assert not _is_cjk_font(str(dejavu))
    assert not _is_cjk_font(str(REPO / "README.md"))
    zh = next(p for p in shapes_prompts(languages=("zh",)) if p.motion == "grows")
    assert _label(zh, None) == "[zh] cyan triangle grows"
    assert _label(zh, "/some/cjk.ttf") == zh.prompt


class _PixelVAE(torch.nn.Module):
    """A stand-in VAE: the identity, or a box blur of ``blur`` pixels (what a weak decoder does to edges)."""

    def __init__(self, blur: int = 0) -> None:
        super().__init__()
        self.blur = blur
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return video

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if not self.blur:
            return z
        k = 2 * self.blur + 1
        return torch.nn.functional.avg_pool3d(z, (1, k, k), stride=1, padding=(0, self.blur, self.blur),
                                              count_include_pad=False)


def test_checker_on_vae_reconstructions_is_the_ceiling_a_blurry_vae_lowers() -> None:
    from openwan.bench.shapes_bench import vae_reconstruction

    exact = vae_reconstruction(_PixelVAE(), width=64, height=64, frames=17, clips=12, progress=False)
    ceiling = exact.checker_aggregates
    assert exact.mean_psnr_db == 100.0 and ceiling["videos"] == 12
    # an exact VAE lets every attribute through: the checker reads the renders themselves
    assert ceiling["colour_accuracy"] == ceiling["shape_accuracy"] == ceiling["direction_accuracy"] == 1.0
    blurry = vae_reconstruction(_PixelVAE(blur=3), width=64, height=64, frames=17, clips=12, progress=False)
    assert blurry.checker_aggregates["shape_accuracy"] < 0.75  # corners and star points round off
    assert blurry.checker_aggregates["colour_accuracy"] == 1.0
    assert blurry.to_dict()["checker_aggregates"]["videos"] == 12
    # the same clips as rendered: the checker's own accuracy, which no VAE changes (so the drop is the VAE's)
    truth = blurry.to_dict()["render_checker_aggregates"]
    assert truth == exact.render_checker_aggregates == ceiling and truth["videos"] == 12
    assert all("shape_correct" in c["render_scores"] for c in blurry.clips)
