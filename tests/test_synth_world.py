"""The procedural physics-world generator: determinism, held-out split, captions, physics, files."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json

import numpy as np
import pytest

from openwan.bench.shapes import analyse
from openwan.data.manifest import read_manifest
from openwan.data.synth_captions import COLOUR_WORDS, MOTION_TEMPLATES, SHAPE_WORDS
from openwan.data.synth_world import (
    ALL_BACKGROUNDS,
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    PAN_MOTIONS,
    ClipSpec,
    SynthWorldConfig,
    _simulate,  # the scene before drawing: cheap enough for hundreds of seeds
    add_synth_world_parser,
    caption_for,
    generate_dataset,
    half_width,
    heldout_prompts,
    is_held_out,
    render_clip,
    render_clip_with_mask,
    run_synth_world,
    sample_spec,
    world_settings,
)
from openwan.errors import InputError
from openwan.media import read_video


def _spec(motion: str, seed: int = 3, **kw) -> ClipSpec:
    base = {"shape": "circle", "colour": "red", "size": "large", "motion": motion, "background": "dark grey",
            "seed": seed}
    if motion == "collides":
        base.update(shape2="square", colour2="green", size2="small")
    base.update(kw)
    return ClipSpec(**base)


def _centroids(frames: np.ndarray, rgb) -> np.ndarray:
    """Per-frame (x, y) centroid of pixels close to ``rgb`` — measured from the image, not the truth."""
    f = frames.astype(np.float32)
    d = np.linalg.norm(f - np.asarray(rgb, np.float32), axis=-1)
    # Soft coverage from the colour distance to the (median) background, so edge pixels count partly.
    far = np.linalg.norm(np.median(f.reshape(len(f), -1, 3), 1) - np.asarray(rgb, np.float32), axis=-1)
    cover = np.clip(1 - d / far[:, None, None], 0, 1)
    mask = np.where(cover > 0.4, cover, 0)
    assert (mask > 0.9).reshape(len(frames), -1).sum(1).min() > 4, "object not visible in some frame"
    ys, xs = np.mgrid[: frames.shape[1], : frames.shape[2]]
    n = mask.sum((1, 2))
    return np.stack([(mask * xs).sum((1, 2)) / n, (mask * ys).sum((1, 2)) / n], 1)


def _area(frames: np.ndarray, rgb) -> np.ndarray:
    d = np.linalg.norm(frames.astype(np.float32) - np.asarray(rgb, np.float32), axis=-1)
    return (d < 50).sum((1, 2))


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="4n\\+1"):
        SynthWorldConfig(frames=16)
    with pytest.raises(InputError, match="multiple of 16"):
        SynthWorldConfig(width=60)
    with pytest.raises(InputError, match="held_out"):
        SynthWorldConfig(held_out=(("hexagon", "red", "grows"),))
    with pytest.raises(InputError, match="motion"):
        _spec("spins")
    with pytest.raises(InputError, match="different colours"):
        _spec("collides", colour2="red")


def test_colours_are_separable():
    rgbs = np.array(list(COLOURS.values()), np.float32)
    pair = np.linalg.norm(rgbs[:, None] - rgbs[None], axis=-1)
    assert pair[~np.eye(len(rgbs), dtype=bool)].min() > 80
    for background in ALL_BACKGROUNDS:  # every colour stands far from every background pixel
        frames, _ = render_clip(_spec("stays still", background=background, colour="yellow"))
        bg = frames[0, :4].reshape(-1, 3).astype(np.float32)  # top rows: background only
        assert np.linalg.norm(bg[:, None] - rgbs[None], axis=-1).min() > 60


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    config = SynthWorldConfig(num_clips=3, seed=5)
    a = generate_dataset(tmp_path / "a", config)
    b = generate_dataset(tmp_path / "b", config)
    assert a.name == "train.jsonl"
    assert a.read_bytes() == b.read_bytes()
    spec = sample_spec(config, 1)
    fa, ta = render_clip(spec)
    fb, tb = render_clip(sample_spec(config, 1))
    assert fa.tobytes() == fb.tobytes() and ta == tb
    other = dataclasses.replace(config, seed=6)
    assert [sample_spec(other, i) for i in range(3)] != [sample_spec(config, i) for i in range(3)]
    assert render_clip(sample_spec(other, 1))[0].tobytes() != fa.tobytes()


def test_held_out_combos_only_in_heldout_split(tmp_path):
    config = SynthWorldConfig(num_clips=12, seed=1)
    held = set(config.held_out)
    assert 8 <= len(held) <= 12
    assert {c[0] for c in held} == set(config.shapes)
    assert {c[1] for c in held} == set(config.colours)
    assert {c[2] for c in held} == set(config.motions)
    train = [sample_spec(config, i) for i in range(600)]
    assert not any(is_held_out(s, config.held_out) for s in train)
    assert {s.motion for s in train} == set(MOTIONS)  # the rest of the world is still covered
    seen = {(s.shape, s.colour, s.motion) for s in train} | {
        (s.shape2, s.colour2, s.motion) for s in train if s.motion == "collides"}
    assert not seen & held
    heldout = read_manifest(generate_dataset(tmp_path, config, split="heldout"))
    assert {(e.extra["shape"], e.extra["colour"], e.extra["motion_label"]) for e in heldout} == held
    prompts = heldout_prompts(config)
    assert {(p["shape"], p["colour"], p["motion"]) for p in prompts} == held
    assert {p["language"] for p in prompts} == {"en", "zh"}
    assert {"prompt": "a red circle falls and bounces", "language": "en", "shape": "circle", "colour": "red",
            "motion": "falls and bounces"} in prompts


def test_captions_bilingual_with_colour_and_shape_words():
    for motion, by_lang in MOTION_TEMPLATES.items():
        for lang in ("en", "zh"):
            assert len(set(by_lang[lang])) >= 2, (motion, lang)
    for motion, shape, colour in itertools.product(MOTIONS, SHAPE_WORDS, COLOURS):
        spec = _spec(motion, shape=shape, colour=colour, colour2="blue" if colour != "blue" else "red")
        for lang in ("en", "zh"):
            texts = {caption_for(spec, lang, v) for v in range(3)}
            assert len(texts) >= 2
            for text in texts:
                assert COLOUR_WORDS[colour][lang] in text and SHAPE_WORDS[shape][lang] in text, text
                if motion == "collides":
                    assert COLOUR_WORDS[spec.colour2][lang] in text and SHAPE_WORDS["square"][lang] in text
    assert caption_for(_spec("falls and bounces"), "en", 0) == "a red circle falls and bounces"
    assert caption_for(_spec("falls and bounces"), "zh", 0) == "一个红色的圆落下并弹起"
    small_blue = _spec("moves left", shape="square", colour="blue", size="small", mention_size=True)
    assert caption_for(small_blue, "en", 0) == "a small blue square moves to the left"
    assert caption_for(small_blue, "zh", 0) == "一个小的蓝色正方形向左移动"
    assert caption_for(_spec("collides"), "en", 0) == "a red circle and a green square collide"
    assert caption_for(_spec("collides"), "zh", 0) == "红色的圆和绿色的正方形相撞"
    star = _spec("camera pans left", shape="star", colour="yellow")
    assert caption_for(star, "en", 0) == "the camera pans left over a yellow star"
    assert caption_for(star, "zh", 0) == "镜头向左平移，画面中有一个黄色的星星"
    assert caption_for(_spec("grows", colour="orange"), "en", 0) == "an orange circle grows"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fall_is_parabolic_and_bounces_on_the_floor(seed):
    frames, truth = render_clip(_spec("falls and bounces", seed=seed))
    y = _centroids(frames, COLOURS["red"])[:, 1]
    t_hit = truth["bounce_times"][0]
    t = np.arange(int(np.floor(t_hit)) + 1)
    assert len(t) >= 5
    coef = np.polyfit(t, y[t], 2)
    resid = y[t] - np.polyval(coef, t)
    r2 = 1 - (resid**2).sum() / ((y[t] - y[t].mean()) ** 2).sum()
    assert coef[0] > 0 and r2 > 0.99
    assert coef[0] == pytest.approx(truth["gravity"] / 2, rel=0.1)  # pixels agree with the physics
    obj = truth["objects"][0]
    bottom = np.array([c[1] for c in obj["centroids"]]) + obj["bottom"]
    floor, g = truth["floor_y"], truth["gravity"]
    assert bottom.max() <= floor + 1e-3  # never sinks through the floor
    assert truth["bounce_frames"] and truth["bounce_frames"][0] == round(t_hit)
    for bt, bf in zip(truth["bounce_times"], truth["bounce_frames"]):
        # within half a frame of the impact the object can be at most v_impact * 0.5 above the floor
        assert floor - bottom[bf] <= g * t_hit * 0.5 + 0.5
    assert y[round(t_hit)] > y[0] + 10 and y[-1] < y.max() + 0.5  # it went down, then came back up
    first_after = int(np.ceil(t_hit))
    assert y[first_after + 1] < y[first_after] - 0.5  # moving up right after the bounce


@pytest.mark.parametrize("motion,axis,sign", [("moves left", 0, -1), ("moves right", 0, 1),
                                              ("moves up", 1, -1), ("moves down", 1, 1)])
def test_moves_are_monotonic_in_the_stated_direction(motion, axis, sign):
    frames, truth = render_clip(_spec(motion, shape="triangle", colour="blue"))
    c = _centroids(frames, COLOURS["blue"])
    steps = np.diff(c[:, axis]) * sign
    assert (steps > 0.3).all() and steps.sum() > 0.2 * frames.shape[2]
    assert np.ptp(c[:, 1 - axis]) < 0.5
    offset = c[:, axis] - np.array(truth["objects"][0]["centroids"])[:, axis]  # pixels follow the truth
    assert np.ptp(offset) < 0.6


@pytest.mark.parametrize("pair,axis", [(("moves left", "moves right"), 0), (("moves up", "moves down"), 1),
                                        (("camera pans left", "camera pans right"), 0)])
def test_first_frame_does_not_give_away_the_direction(pair, axis):
    """Both directions of an axis start from the same band of positions, so a model cannot read the
    direction off where the object first appears; it has to read the caption."""
    def first_screen_position(spec: ClipSpec) -> float:
        scene = _simulate(spec, np.random.default_rng(spec.seed))  # as render_clip does, without drawing
        track = scene.tracks[0]
        return float((track.x[0] - scene.cam_x[0]) if axis == 0 else track.y[0])

    starts = {m: np.array([first_screen_position(_spec(m, seed=s, size=("small", "large")[s % 2]))
                           for s in range(400)]) for m in pair}
    a, b = (starts[m] for m in pair)
    assert abs(a.mean() - b.mean()) < 1.0 and abs(a.min() - b.min()) < 1.5 and abs(a.max() - b.max()) < 1.5
    # a threshold on the start position predicts the direction no better than chance
    best = max(max(np.mean(np.r_[a < c, b >= c]), np.mean(np.r_[a >= c, b < c])) for c in np.r_[a, b])
    assert best < 0.6


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_collision_meets_and_conserves_momentum(seed):
    spec = _spec("collides", seed=seed, background="light grey")
    frames, truth = render_clip(spec)
    a, b = _centroids(frames, COLOURS["red"])[:, 0], _centroids(frames, COLOURS["green"])[:, 0]
    tc, fc = truth["collision_time"], truth["collision_frame"]
    gap = b - a - truth["contact_distance"]
    before = np.arange(int(np.floor(tc)) + 1)
    after = np.arange(int(np.ceil(tc)), frames.shape[0])
    assert (np.diff(gap[before]) < 0).all()  # they approach
    assert (np.diff(gap[after]) > 0).all()  # and separate
    rel = abs(truth["velocities_before"][0] - truth["velocities_before"][1])
    assert -0.6 <= gap[fc] <= rel * 0.5 + 0.6  # they touch within a frame of the collision
    assert gap.min() > -0.6  # never pass through each other
    ma, mb = (o["mass"] for o in truth["objects"])
    va, vb = np.polyfit(before, a[before], 1)[0], np.polyfit(before, b[before], 1)[0]
    va2, vb2 = np.polyfit(after, a[after], 1)[0], np.polyfit(after, b[after], 1)[0]
    scale = abs(ma * va) + abs(mb * vb)
    assert abs((ma * va + mb * vb) - (ma * va2 + mb * vb2)) < 0.05 * scale
    # Elastic: kinetic energy is conserved too, and the lighter object's velocity changed more.
    assert ma * va2**2 + mb * vb2**2 == pytest.approx(ma * va**2 + mb * vb**2, rel=0.1)


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "star"])
def test_large_colliding_objects_fit_and_keep_their_speed(shape):
    """Two large objects at full size nearly fill a 64-px row (two stars do not fit); a collision that
    barely moves teaches the DiT nothing, so both stay whole in the frame and approach by many pixels."""
    approach = []
    for seed in range(20):
        spec = _spec("collides", seed=seed, size="large", size2="large", shape=shape, shape2=shape)
        scene = _simulate(spec, np.random.default_rng(seed))
        gap = np.abs(scene.tracks[1].x - scene.tracks[0].x)
        approach.append(gap[0] - gap.min())
        for tr in scene.tracks:
            hw = half_width(tr.shape, tr.r[0])
            assert tr.x.min() - hw >= 0 and tr.x.max() + hw <= spec.width - 1
    assert np.mean(approach) > 8 and np.percentile(approach, 10) > 5


def test_collision_too_wide_for_the_frame_is_a_clear_error(monkeypatch):
    import openwan.data.synth_world as sw

    monkeypatch.setitem(sw.SIZE_FRACTION, "large", 0.4)  # two of them are wider than the frame
    spec = _spec("collides", size="large", size2="large", shape="square", shape2="square")
    with pytest.raises(InputError, match="too narrow"):
        render_clip(spec)


@pytest.mark.parametrize("motion,sign", [("camera pans left", 1), ("camera pans right", -1)])
@pytest.mark.parametrize("background", ALL_BACKGROUNDS)
def test_camera_pan_shifts_background_and_objects(motion, sign, background):
    import cv2

    frames, truth = render_clip(_spec(motion, shape="star", colour="yellow", background=background))
    grey = frames.astype(np.float64).mean(-1)
    grey -= grey.mean((1, 2), keepdims=True)
    window = cv2.createHanningWindow(grey.shape[:0:-1], cv2.CV_64F)  # tames the new content at the edges
    shifts = [cv2.phaseCorrelate(grey[t], grey[t + 1], window)[0] for t in range(len(grey) - 1)]
    dx = np.array([s[0] for s in shifts])
    speed = abs(truth["camera_offsets"][1][0] - truth["camera_offsets"][0][0])
    assert speed > 0.5
    # "pans left" = the camera moves left, so the content moves right in the image.
    assert (dx * sign > 0.5 * speed).all() and np.allclose(dx * sign, speed, atol=0.35)
    assert np.abs([s[1] for s in shifts]).max() < 0.3
    x = _centroids(frames, COLOURS["yellow"])[:, 0]
    assert np.allclose(np.diff(x) * sign, speed, atol=0.3)  # the object moves with the background


@pytest.mark.parametrize("motion,sign", [("camera pans left", 1), ("camera pans right", -1)])
@pytest.mark.parametrize("size", ["small", "large"])
def test_a_fixed_pan_speed_moves_scene_and_object_by_whole_pixels_and_keeps_the_object_in_frame(motion, sign, size):
    """``pan_speed = 2``: the scene moves 2 px per frame (one 8-px VAE cell per 4-frame latent step), and
    the object, shrunk where a large one would not fit beside a 32-px pan, stays whole in every frame."""
    from openwan.bench.shapes import analyse

    for seed in range(3):
        spec = _spec(motion, seed=seed, shape="star", colour="yellow", size=size, pan_speed=2)
        frames, mask, truth = render_clip_with_mask(spec)
        offsets = np.array(truth["camera_offsets"])[:, 0]
        assert np.allclose(np.diff(offsets), -2.0 * sign)
        analysis = analyse(frames)
        assert analysis.camera_pan == motion.split()[-1] and abs(analysis.background_shift[0] - 32 * sign) < 1.0
        x = _centroids(frames, COLOURS["yellow"])[:, 0]
        assert np.allclose(np.diff(x) * sign, 2.0, atol=0.3)  # the object rides along
        cols = mask.any(1)  # [T, W]: columns the object covers
        assert not cols[:, 0].any() and not cols[:, -1].any()  # never cut by the frame's edge
        assert mask.reshape(len(mask), -1).astype(bool).sum(1).std() < 2.0  # nor drawn smaller in some frames
    # The default draws the speed per clip as before; a pan faster than half the frame over the clip is refused.
    assert SynthWorldConfig().pan_speed == 0 and sample_spec(SynthWorldConfig(pan_speed=2), 5).pan_speed == 2
    with pytest.raises(InputError, match="pan_speed 3 px/frame shifts a 64-px-wide, 17-frame clip by 48 px"):
        SynthWorldConfig(pan_speed=3)


def _wall_contrast_at_latent_scale(spec: ClipSpec) -> float:
    """How much the wall's 8x8-pixel blocks (one latent cell each) differ along a row, where a horizontal
    pan moves them: grey-level std of the block means across each block row above the floor, averaged."""
    frames, mask, _ = render_clip_with_mask(spec)
    grey = frames[0].astype(np.float64).mean(-1)
    wall = (mask[0] == 0).astype(np.float64)  # the object is not the wall
    h = int(spec.height * 0.9) // 8 * 8
    sums = (grey * wall)[:h].reshape(h // 8, 8, -1, 8).sum((1, 3))
    counts = wall[:h].reshape(h // 8, 8, -1, 8).sum((1, 3))
    return float(np.mean([np.std(s[c > 0] / c[c > 0]) for s, c in zip(sums, counts)]))


def test_mottled_walls_are_opt_in_grey_and_structured_at_the_latent_scale():
    assert "mottled" not in BACKGROUNDS and SynthWorldConfig().backgrounds == BACKGROUNDS
    default = SynthWorldConfig(num_clips=200)
    assert {sample_spec(default, i).background for i in range(200)} == set(BACKGROUNDS)
    for seed in range(4):
        spec = _spec("camera pans left", seed=seed, shape="square", colour="cyan", size="small")
        mottled = _wall_contrast_at_latent_scale(dataclasses.replace(spec, background="mottled"))
        flat = max(_wall_contrast_at_latent_scale(dataclasses.replace(spec, background=b)) for b in BACKGROUNDS)
        # the default walls' fine texture averages out within a latent cell; the patches do not
        assert flat < 2.0 and mottled > 3 * flat, (seed, flat, mottled)
    frames, mask, _ = render_clip_with_mask(_spec("stays still", background="mottled"))
    wall = frames[mask == 0].astype(np.int16)
    assert np.abs(wall - wall[:, :1]).max() <= 1  # grey: the patches add no hue for the colour checker
    config = SynthWorldConfig(num_clips=8, backgrounds=("mottled",), motions=("camera pans left",))
    assert {sample_spec(config, i).background for i in range(8)} == {"mottled"}
    with pytest.raises(InputError, match="mottled"):
        SynthWorldConfig(backgrounds=("moon",))


def test_window_walls_are_opt_in_grey_and_carry_a_landmark_that_pans_with_the_camera():
    assert "windows" not in BACKGROUNDS
    spec = dataclasses.replace(_spec("camera pans left", shape="square", colour="cyan", size="small"),
                               background="windows")
    frames, mask, truth = render_clip_with_mask(spec)
    wall = frames[mask == 0].astype(np.int16)
    assert np.abs(wall - wall[:, :1]).max() <= 1  # grey panes: no hue for the colour checker
    # a pane is a bright block 2-3 latent cells wide: the wall's columns differ by far more than the texture
    rows = frames[0, 8:40].astype(np.float32).mean(axis=(0, 2))
    assert np.ptp(rows) > 40, np.ptp(rows)
    analysis = analyse(frames)
    assert analysis.camera_pan == "left", analysis.background_shift
    true_shift = -(truth["camera_offsets"][-1][0] - truth["camera_offsets"][0][0])  # content moves against the camera
    assert true_shift > 8 and abs(analysis.background_shift[0] - true_shift) < 2, analysis.background_shift
    with pytest.raises(InputError, match="windows"):
        SynthWorldConfig(backgrounds=("moon",))


def test_pan_backgrounds_choose_the_walls_behind_camera_pans_only():
    default = SynthWorldConfig(num_clips=300)
    windows = dataclasses.replace(default, pan_backgrounds=("windows",))
    specs = [(sample_spec(default, i), sample_spec(windows, i)) for i in range(300)]
    pans = [(d, w) for d, w in specs if d.motion in PAN_MOTIONS]
    assert len(pans) > 20 and {w.background for _, w in pans} == {"windows"}
    # only the wall changes: the same draws decide everything else, and every other clip is the default's
    assert all(dataclasses.replace(w, background=d.background) == d for d, w in pans)
    assert all(d == w for d, w in specs if d.motion not in PAN_MOTIONS)
    assert default.pan_backgrounds is None and world_settings(default)["pan_backgrounds"] is None
    for bad in ((), ("moon",), ("windows", "windows")):
        with pytest.raises(InputError, match="pan_backgrounds must be distinct values from"):
            SynthWorldConfig(pan_backgrounds=bad)


def test_grow_and_shrink_change_area_monotonically():
    for motion, sign in (("grows", 1), ("shrinks", -1)):
        frames, truth = render_clip(_spec(motion, shape="square", colour="purple"))
        area = _area(frames, COLOURS["purple"])
        assert (np.diff(area) * sign >= 0).all() and (area[-1] - area[0]) * sign > area.min()
        radii = truth["objects"][0]["radii"]
        assert (np.diff(radii) * sign > 0).all()
    frames, _ = render_clip(_spec("stays still"))
    assert np.ptp(_centroids(frames, COLOURS["red"]), axis=0).max() < 1e-6


def test_cli_writes_readable_manifest_and_faithful_videos(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="openwan data")
    add_synth_world_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["synth-world", str(tmp_path / "world"), "--clips", "4", "--size", "64x48",
                              "--frames", "9", "--seed", "2"])
    with pytest.raises(SystemExit):
        parser.parse_args(["synth-world", "x", "--size", "64by64"])
    assert run_synth_world(args) == 0
    assert "train.jsonl" in capsys.readouterr().out
    with pytest.raises(InputError, match="multiple of 16"):
        run_synth_world(parser.parse_args(["synth-world", str(tmp_path / "bad"), "--size", "60x60"]))
    entries = read_manifest(tmp_path / "world" / "train.jsonl")
    assert len(entries) == 4
    config = SynthWorldConfig(width=64, height=48, frames=9, num_clips=4, seed=2)
    for i, e in enumerate(entries):
        spec = sample_spec(config, i)
        assert e.kind == "video" and (e.width, e.height, e.num_frames, e.fps) == (64, 48, 9, 16.0)
        assert e.caption == caption_for(spec, spec.language, spec.variant)
        assert e.extra["language"] == spec.language and set(e.extra["captions"]) == {"en", "zh"}
        for key in ("shape", "colour", "size", "background", "seed"):
            assert e.extra[key] == getattr(spec, key)
        assert e.extra["motion_label"] == spec.motion and e.motion is None
        frames, truth = render_clip(spec)
        assert e.extra["truth"] == truth and len(truth["objects"][0]["centroids"]) == 9
        decoded, _ = read_video(e.path)
        assert decoded.shape == frames.shape
        mse = ((decoded.astype(np.float64) - frames) ** 2).mean()
        assert 10 * np.log10(255**2 / mse) > 36  # 4:4:4 H.264 at crf 18 (4:2:0 gave 30-35 dB)


def test_openwan_data_synth_world_cli(tmp_path, capsys):
    from openwan.cli import main
    from openwan.data.manifest import read_manifest

    assert main(["data", "synth-world", str(tmp_path / "w"), "--clips", "3", "--seed", "2"]) == 0
    entries = read_manifest(tmp_path / "w" / "train.jsonl")
    assert len(entries) == 3 and all(e.path.is_file() for e in entries)
    # a subset of the world: only pans, only over mottled walls
    assert main(["data", "synth-world", str(tmp_path / "p"), "--clips", "4", "--motions",
                 "camera pans left, camera pans right", "--backgrounds", "mottled"]) == 0
    rows = [e.extra for e in read_manifest(tmp_path / "p" / "train.jsonl")]
    assert {r["background"] for r in rows} == {"mottled"}
    assert {r["motion_label"] for r in rows} <= {"camera pans left", "camera pans right"}
    assert main(["data", "synth-world", str(tmp_path / "fast"), "--clips", "2", "--motions", "camera pans left",
                 "--pan-speed", "2"]) == 0
    truth = read_manifest(tmp_path / "fast" / "train.jsonl")[0].extra["truth"]
    assert np.allclose(np.diff(np.array(truth["camera_offsets"])[:, 0]), -2.0)  # the camera moves left
    assert main(["data", "synth-world", str(tmp_path / "pw"), "--clips", "12", "--pan-backgrounds", "windows"]) == 0
    rows = [e.extra for e in read_manifest(tmp_path / "pw" / "train.jsonl")]
    assert {r["background"] for r in rows if r["motion_label"] in PAN_MOTIONS} == {"windows"}
    assert "windows" not in {r["background"] for r in rows if r["motion_label"] not in PAN_MOTIONS}
    assert json.loads((tmp_path / "pw" / "train.world.json").read_text())["pan_backgrounds"] == ["windows"]
    assert main(["data", "synth-world", str(tmp_path / "bad"), "--backgrounds", "dark grey,moon"]) != 0
    assert "backgrounds must be distinct values from" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
