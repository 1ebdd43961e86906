"""End to end: tiny random checkpoints in both layouts through the Python API and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import SMALL

from openwan import load_pipeline
from openwan.cli import main
from openwan.media import read_video


def test_cli_generates_mp4_with_requested_frames_size_and_metadata(tiny_official, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc = main(["generate", "a red ball bounces", "--model", str(tiny_official), "--size", "64x48",
               "--frames", "9", "--steps", "3", "--seed", "11", "--output", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    frames, meta = read_video(out)
    assert frames.shape == (9, 48, 64, 3)
    info = json.loads(meta["comment"])
    assert info["prompt"] == "a red ball bounces" and info["seed"] == 11 and info["steps"] == 3
    assert info["solver"] == "unipc" and info["fps"] == 16
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar == info
    # no temporary files left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.mp4"]


def test_api_returns_uint8_frames_and_is_deterministic(tiny_pipe):
    a = tiny_pipe.generate("a cat", progress=False, **SMALL)
    b = tiny_pipe.generate("a cat", progress=False, **SMALL)
    c = tiny_pipe.generate("a cat", progress=False, **{**SMALL, "seed": 8})
    assert a.frames.dtype == np.uint8 and a.frames.shape == (5, 64, 64, 3)
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    assert a.metadata["negative_prompt"].startswith("色调艳丽")  # the official default negative prompt
    assert a.frames.std() > 1.0  # random weights still give a non-constant video


def test_noise_is_seeded_on_cpu_as_randn_16_t_h_w(tiny_pipe):
    """One Euler step from the seeded noise has a closed form: x1 = x0 + (s1 - s0) v(x0)."""
    from openwan.sampling import make_solver

    r = tiny_pipe.generate("x", progress=False, solver="euler", guidance=1.0, **{**SMALL, "steps": 1})
    noise = torch.randn(16, 2, 8, 8, generator=torch.Generator("cpu").manual_seed(SMALL["seed"]))
    solver = make_solver("euler", 1, 5.0)
    v = tiny_pipe.dit(noise[None], solver.timesteps[:1], tiny_pipe.encode_prompts(["x"]))
    expected = noise[None] + float(solver.sigmas[1] - solver.sigmas[0]) * v
    torch.testing.assert_close(r.latents, expected, rtol=1e-5, atol=1e-5)


def test_official_and_diffusers_layouts_give_identical_frames(tiny_official, tiny_diffusers):
    a = load_pipeline(tiny_official, device="cpu").generate("a boat on a lake", progress=False, **SMALL)
    b = load_pipeline(tiny_diffusers, device="cpu").generate("a boat on a lake", progress=False, **SMALL)
    assert np.array_equal(a.frames, b.frames)


def test_text_to_image_writes_png(tiny_pipe, tmp_path):
    from PIL import Image

    r = tiny_pipe.generate("a red apple", width=64, height=48, frames=1, steps=2, seed=1,
                           output=tmp_path / "apple.png", progress=False)
    img = Image.open(r.path)
    assert img.size == (64, 48)
    assert json.loads(img.text["openwan"])["prompt"] == "a red apple"
    assert np.array_equal(np.asarray(img.convert("RGB")), r.image)


@pytest.mark.parametrize("solver", ["unipc", "dpm++", "euler"])
def test_every_solver_runs(tiny_pipe, solver):
    r = tiny_pipe.generate("waves", solver=solver, progress=False, **SMALL)
    assert r.metadata["solver"] == solver and r.frames.shape == (5, 64, 64, 3)


def test_offload_and_text_encoder_device_give_the_same_frames(tiny_official):
    base = load_pipeline(tiny_official, device="cpu").generate("a fox", progress=False, **SMALL)
    off = load_pipeline(tiny_official, device="cpu", offload=True, text_encoder_device="cpu")
    assert np.array_equal(off.generate("a fox", progress=False, **SMALL).frames, base.frames)


def test_guidance_one_skips_the_unconditional_pass(tiny_pipe, monkeypatch):
    calls = []
    orig = tiny_pipe.dit.forward
    monkeypatch.setattr(tiny_pipe.dit, "forward", lambda *a, **k: calls.append(1) or orig(*a, **k))
    tiny_pipe.generate("a fox", guidance=1.0, progress=False, **SMALL)
    assert len(calls) == SMALL["steps"]
    calls.clear()
    tiny_pipe.generate("a fox", guidance=5.0, progress=False, **SMALL)
    assert len(calls) == 2 * SMALL["steps"]


def test_info_reports_layout_and_config(tiny_official, tiny_diffusers, capsys):
    assert main(["info", str(tiny_official), "--json"]) == 0
    official = json.loads(capsys.readouterr().out)
    assert main(["info", str(tiny_diffusers), "--json"]) == 0
    diffusers = json.loads(capsys.readouterr().out)
    assert official["layout"] == "official" and diffusers["layout"] == "diffusers"
    assert official["dit_config"] == diffusers["dit_config"]
    assert official["dit_parameters"] == diffusers["dit_parameters"] > 0
    assert official["variant"] == "custom"
    assert main(["info", str(tiny_official)]) == 0
    assert "layout:    official" in capsys.readouterr().out


def test_outputs_get_normal_permissions_not_0600(tiny_pipe, tmp_path):
    import os
    import stat

    r = tiny_pipe.generate("x", output=tmp_path / "v.mp4", progress=False, **SMALL)
    umask = os.umask(0)
    os.umask(umask)
    for p in (r.path, r.path.with_suffix(".json")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_a_guidance_interval_guides_only_the_steps_whose_sigma_lies_inside(tiny_pipe, monkeypatch):
    """CFG at low <= sigma <= high only: (0, 1) is plain CFG, an interval that holds no step is guidance 1,
    and each step outside the interval costs one DiT call instead of two."""
    from openwan.sampling import make_solver

    sigmas = [make_solver("unipc", SMALL["steps"], 5.0).sigma(i) for i in range(SMALL["steps"])]
    assert sigmas == sorted(sigmas, reverse=True) and len(set(sigmas)) == len(sigmas)
    plain = tiny_pipe.generate("a fox", guidance=5.0, progress=False, **SMALL)
    assert np.array_equal(tiny_pipe.generate("a fox", guidance=5.0, guidance_interval=(0.0, 1.0), progress=False,
                                             **SMALL).frames, plain.frames)
    assert plain.metadata["guidance_interval"] == [0.0, 1.0]

    unguided = tiny_pipe.generate("a fox", guidance=1.0, progress=False, **SMALL)
    below_all = (0.0, min(sigmas) / 2)
    none_inside = tiny_pipe.generate("a fox", guidance=5.0, guidance_interval=below_all, progress=False, **SMALL)
    torch.testing.assert_close(none_inside.latents, unguided.latents, rtol=1e-5, atol=1e-5)

    calls = []
    orig = tiny_pipe.dit.forward
    monkeypatch.setattr(tiny_pipe.dit, "forward", lambda *a, **k: calls.append(1) or orig(*a, **k))
    high_half = ((sigmas[1] + sigmas[2]) / 2, 1.0)  # the first two steps
    half = tiny_pipe.generate("a fox", guidance=5.0, guidance_interval=high_half, progress=False, **SMALL)
    assert len(calls) == SMALL["steps"] + 2
    assert half.metadata["guidance_interval"] == [pytest.approx(high_half[0]), 1.0]
    assert not torch.allclose(half.latents, plain.latents) and not torch.allclose(half.latents, unguided.latents)


@pytest.mark.parametrize("interval, match", [
    ((0.5, 0.5), "0 <= low < high <= 1"), ((0.8, 0.2), "0 <= low < high <= 1"), ((-0.1, 1.0), "0 <= low"),
    ((0.0, 1.5), "high <= 1"), ((0.1,), "two sigmas"), ("0.1 0.9", "two sigmas"), ((0.1, float("nan")), "numbers"),
])
def test_a_bad_guidance_interval_is_refused_before_any_compute(tiny_pipe, monkeypatch, interval, match):
    from openwan.errors import InputError

    monkeypatch.setattr(type(tiny_pipe), "_denoise", lambda *a, **k: pytest.fail("computed before checking"))
    with pytest.raises(InputError, match=match):
        tiny_pipe.generate("x", guidance_interval=interval, progress=False, **SMALL)


def test_cli_guidance_interval_is_recorded_and_checked_before_loading(tiny_official, tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    rc = main(["generate", "a red ball", "--model", str(tiny_official), "--frames", "5", "--steps", "3",
               "--guidance-interval", "0.3", "1", "--seed", "1", "-o", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(out.with_suffix(".json").read_text())["guidance_interval"] == [0.3, 1.0]
    # a reversed interval fails before the (here nonexistent) checkpoint is read
    rc = main(["generate", "x", "--model", str(tmp_path / "nowhere"), "--guidance-interval", "0.9", "0.1",
               "-o", str(tmp_path / "b.mp4")])
    err = capsys.readouterr().err
    assert rc == 1 and "guidance interval needs 0 <= low < high <= 1" in err and "nowhere" not in err


def test_a_checkpoints_sample_config_sets_the_default_guidance_interval(tiny_official, tmp_path):
    import shutil

    from openwan.errors import CheckpointError

    model = tmp_path / "m"
    shutil.copytree(tiny_official, model)
    (model / "sample_config.json").write_text(json.dumps({"steps": 3, "guidance_interval": [0.4, 1.0]}))
    r = load_pipeline(model, device="cpu").generate("x", frames=5, seed=1, progress=False)
    assert r.metadata["guidance_interval"] == [0.4, 1.0] and r.metadata["steps"] == 3
    (model / "sample_config.json").write_text(json.dumps({"guidance_interval": [1.0, 0.4]}))
    with pytest.raises(CheckpointError, match=r"sample_config\.json: guidance interval needs"):
        load_pipeline(model, device="cpu")
