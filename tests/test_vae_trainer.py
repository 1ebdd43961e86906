"""`openwan train` with task = "vae": image stage -> inflation -> video stage with a GAN, then export."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import torch_threads
from test_trainer import RESUME_SCRIPT, _run, moving_square

from openwan.media import write_video
from openwan.training import load_config, train


def _clips(folder, specs):
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (color, dx, dy) in enumerate(specs):
        write_video(moving_square(color, dx, dy, frames=9, size=32), folder / f"c{i}.mp4", fps=16)
        rows.append({"path": f"c{i}.mp4", "caption": "a square"})
    (folder / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "m.jsonl"


def _psnr_of(vae, clips) -> float:
    from openwan.data.decode import decode_clip

    scores = []
    for path in clips:
        frames = decode_clip(path, num_frames=5, fps=16)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        with torch.no_grad():
            mu, _ = vae.encode_distribution(video)
            recon = vae.decode(mu)  # raw latents: no normalisation round trip needed
        err = ((recon.clamp(-1, 1) - video) ** 2).mean().item() / 4  # [-1,1] -> [0,1] range
        scores.append(10 * np.log10(1 / err))
    return float(np.mean(scores))


def test_vae_curriculum_image_then_video_with_gan_improves_held_out_psnr(tmp_path, tiny_official, monkeypatch):
    from openwan.checkpoint.loader import load_vae
    from openwan.models.image_vae import ImageVAE
    from openwan.training.vae_inflate import inflate_image_vae
    from openwan.training.vae_trainer import base_vae_config

    train_m = _clips(tmp_path / "train", [((220, 30, 30), 1, 0), ((30, 200, 30), 0, 1), ((30, 30, 220), 1, 1),
                                         ((220, 220, 30), -1, 0), ((200, 30, 200), 0, -1), ((30, 200, 200), 1, -1)])
    _clips(tmp_path / "held", [((240, 120, 30), 1, 1), ((120, 30, 240), -1, 1)])
    cfg_path = tmp_path / "vae.toml"
    cfg_path.write_text(textwrap.dedent(f"""
        [run]
        output_dir = "{tmp_path / 'run'}"
        task = "vae"
        [model]
        base = "{tiny_official}"
        init = "random"
        [optim]
        lr = 2e-3
        weight_decay = 0.0
        [vae.loss]
        kl = 1e-6
        gan = 0.1
        gan_start_step = 170
        disc_base = 8
        disc_layers = 2
        [logging]
        every = 10
        progress = false
        tensorboard = false
        [[datasets]]
        name = "clips"
        manifest = "{train_m}"
        [[stages]]
        name = "image"
        steps = 150
        batch_size = 3
        buckets = ["32x32"]
        datasets = {{ clips = 1 }}
        [[stages]]
        name = "video"
        steps = 40
        batch_size = 2
        buckets = ["32x32x5"]
        datasets = {{ clips = 1 }}
        schedule = "cosine"
    """))
    cfg = load_config(cfg_path)
    with torch_threads(1):  # tiny convs: threading overhead outweighs the work on 2 busy cores
        result = train(cfg)
    assert result.steps == 190
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["stage"] == "video" for r in logs)
    assert all("l1" in r and "kl" in r for r in logs)
    assert any("d_loss" in r for r in logs if r["step"] > 170)  # the GAN stage started at step 170
    # The same random init the run started from, inflated, is the baseline.
    torch.manual_seed(cfg.run.seed)
    init = inflate_image_vae(ImageVAE(base_vae_config(cfg))).eval()
    trained = load_vae(result.export_dir / "Wan2.1_VAE.pth")
    clips = [tmp_path / "held" / "c0.mp4", tmp_path / "held" / "c1.mp4"]
    before, after = _psnr_of(init, clips), _psnr_of(trained, clips)
    print(f"held-out PSNR {before:.1f} -> {after:.1f} dB")
    # Seeds 0-2 gain 5.6-7.7 dB; a run that does not learn gains about 0. The GAN stage makes the result
    # sensitive to tiny numeric differences (thread scheduling, CPU kernels): one CI run gained 4.7 dB.
    assert after >= before + 3
    # The discriminator trained once the GAN stage began.
    assert (tmp_path / "run" / "checkpoints").is_dir()


def short_vae_config(tmp: Path, base: Path, manifest: Path, *, size: int, init: str = "random",
                     sections: str = "", video_steps: int = 1, image_extra: str = "", video_extra: str = "") -> Path:
    """A VAE run of an image stage (2 steps) and a video stage (``video_steps``) at ``size`` px; ``sections``
    is extra TOML (e.g. ``[vae.loss]`` settings), ``image_extra`` / ``video_extra`` extra stage keys."""
    cfg = tmp / "vae.toml"
    cfg.write_text(f"""
[run]
output_dir = "{tmp / 'vae-run'}"
task = "vae"
[model]
base = "{base}"
init = "{init}"
{sections}
[logging]
every = 1
progress = false
tensorboard = false
[[datasets]]
name = "clips"
manifest = "{manifest}"
[[stages]]
name = "image"
steps = 2
{image_extra}
batch_size = 2
buckets = ["{size}x{size}"]
datasets = {{ clips = 1 }}
[[stages]]
name = "video"
steps = {video_steps}
{video_extra}
batch_size = 1
buckets = ["{size}x{size}x5"]
datasets = {{ clips = 1 }}
""")
    return cfg


def test_freeze_encoder_trains_the_decoder_only_so_latents_stay_valid(tmp_path, tiny_official):
    from openwan.checkpoint.loader import load_vae
    from openwan.errors import InputError
    from openwan.pipelines.loading import resolve_files

    manifest = _clips(tmp_path / "train", [((220, 30, 30), 1, 0), ((30, 200, 30), 0, 1)])
    cfg_path = short_vae_config(tmp_path, tiny_official, manifest, size=32, init="base",
                                sections="[optim]\nlr = 1e-2\n[vae]\nfreeze_encoder = true\n"
                                         "[vae.loss]\nsample_posterior = false")
    result = train(load_config(cfg_path))
    before = dict(load_vae(resolve_files(tiny_official).vae).named_parameters())
    after = dict(load_vae(result.export_dir / "Wan2.1_VAE.pth").named_parameters())
    for name, value in before.items():
        same = torch.equal(value, after[name])
        assert same == name.startswith(("encoder.", "conv1.")), name  # encoder kept, decoder trained
    with pytest.raises(InputError, match="vae.freeze_encoder needs model.init = 'base'"):
        load_config(cfg_path, ['model.init="random"'])


def test_vae_sigkill_in_the_video_stage_then_resume_reproduces_the_loss_sequence(tmp_path, tiny_official):
    """A VAE run killed after the inflation to 3D resumes from its last checkpoint and repeats the
    uninterrupted run's losses exactly (posterior noise, data order, optimizer state and the inflated model
    all come back), so `openwan recipe` re-run after a crash writes the same VAE."""
    manifest = _clips(tmp_path / "train", [((220, 30, 30), 1, 0), ((30, 200, 30), 0, 1), ((30, 30, 220), -1, 0)])
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)

    def config(name: str) -> Path:
        run = tmp_path / name
        run.mkdir()
        return short_vae_config(run, tiny_official, manifest, size=32, sections="[checkpoint]\nevery = 3\nkeep = 1",
                                video_steps=4, image_extra="warmup_steps = 1", video_extra='schedule = "cosine"')

    code, reference = _run(script, config("ref"))
    assert code == 0 and sorted(reference) == list(range(1, 7))  # image steps 1-2, video steps 3-6
    cfg = config("killed")
    code, before = _run(script, cfg, kill_at=5)
    assert code == -9 and max(before) == 5  # SIGKILL after step 5; the last checkpoint is step 3 (video)
    code, after = _run(script, cfg)
    assert code == 0 and sorted(after) == [4, 5, 6]
    for step in range(1, 7):
        got = after.get(step, before.get(step))
        assert got == reference[step], f"step {step}: {got!r} != {reference[step]!r}"
