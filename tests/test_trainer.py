"""End-to-end DiT training: overfitting, exact resume after SIGKILL, interrupted saves, export, bad data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from openwan.errors import InputError
from openwan.media import tensor_to_frames, write_video
from openwan.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def moving_square(color: tuple[int, int, int], dx: int, dy: int, frames: int = 17, size: int = 64) -> np.ndarray:
    """uint8 [T, H, W, 3]: a 16-px square of ``color`` moving (dx, dy) px per frame on a grey background."""
    video = np.full((frames, size, size, 3), 96, np.uint8)
    for t in range(frames):
        x, y = 8 + dx * t, 8 + dy * t
        video[t, max(0, y):max(0, y + 16), max(0, x):max(0, x + 16)] = color
    return video


def write_clips(folder: Path, clips: dict[str, np.ndarray], fps: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (caption, video) in enumerate(clips.items()):
        write_video(video, folder / f"clip{i}.mp4", fps=fps)
        rows.append({"path": f"clip{i}.mp4", "caption": caption})
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


TWO_CLIPS = {
    "a red square moves right": moving_square((220, 30, 30), 2, 0),
    "a blue square moves down": moving_square((30, 30, 220), 0, 2),
}


def write_config(tmp: Path, base: Path, manifest: Path, *, steps: int = 6, extra: str = "", cache: bool = True,
                 every: int = 100) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / "train.toml"
    cfg.write_text(textwrap.dedent(f"""
        [run]
        output_dir = "{tmp / 'run'}"
        seed = 0
        [model]
        base = "{base}"
        init = "random"
        dit = {{ dim = 64, ffn_dim = 128, num_heads = 2, num_layers = 2, freq_dim = 64 }}
        [flow]
        timesteps = "uniform"
        text_dropout = 0.0
        [optim]
        lr = 2e-3
        weight_decay = 0.0
        grad_clip = 1.0
        [checkpoint]
        every = {every}
        [logging]
        every = 1
        progress = false
        tensorboard = false
        [[datasets]]
        name = "clips"
        manifest = "{manifest}"
        cache = {str(cache).lower()}
        [[stages]]
        name = "video"
        steps = {steps}
        batch_size = 2
        buckets = ["64x64x5"]
        datasets = {{ clips = 1.0 }}
        {extra}
    """))
    return cfg


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory) -> Path:
    return write_clips(tmp_path_factory.mktemp("clips"), TWO_CLIPS)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_overfit_two_clips_loss_drops_10x_and_samples_match_the_training_clips(tmp_path):
    """A tiny DiT (dim 128, 2 layers, random init) memorises 2 synth-world clips: the loss falls >= 10x,
    and the video sampled from each caption matches its training clip at >= 25 dB PSNR, both against
    the clip's training latents decoded to pixels (the DiT's own error) and against the rendered clip
    (which adds the VAE's reconstruction error). The tiny VAE + text encoder are the bundled
    shapes-world model's (VAE dim 16): a trained decoder is needed, since a random one maps latent
    error to pixels so unevenly that pixel PSNR says little (~15 dB for 5-frame clips of flat squares)."""
    from safetensors.torch import load_file

    from openwan import load_pipeline
    from openwan.bundled import bundled_model_path
    from openwan.data.synth_world import ClipSpec, caption_for, render_clip
    from openwan.training import train

    specs = [ClipSpec(shape="circle", colour="red", size="large", motion="moves right", background="dark grey", seed=1),
             ClipSpec(shape="square", colour="blue", size="large", motion="falls and bounces",
                      background="light grey", seed=2)]
    clips = {caption_for(spec, "en", 0): render_clip(spec)[0] for spec in specs}  # uint8 [17, 64, 64, 3]
    manifest = write_clips(tmp_path / "clips", clips)
    overrides = ["stages.0.steps=3000", "stages.0.schedule=\"cosine\"", "stages.0.buckets=[\"64x64x17\"]",
                 "flow.timesteps=\"logit_normal\"", "flow.shift=3.0", "model.dit.dim=128", "model.dit.ffn_dim=256",
                 "logging.every=100"]
    result = train(load_config(write_config(tmp_path, bundled_model_path(), manifest), overrides))
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    print(f"loss {first:.4f} -> {last:.4f} ({first / last:.1f}x)")
    assert first / last >= 10
    trained = load_pipeline(result.export_dir, device="cpu")
    for i, (caption, clip) in enumerate(clips.items()):
        z = load_file(tmp_path / "run" / "cache" / "clips" / "latents" / "64x64x17" / f"{i:08d}.safetensors")["latents"]
        with torch.no_grad():
            decoded = tensor_to_frames(trained.vae.decode(z[None])[0])  # the training latents in pixel space
        out = trained.generate(caption, negative_prompt="", width=64, height=64, frames=17, steps=30, guidance=1.0,
                               solver="euler", seed=i, progress=False)
        print(f"{caption}: PSNR {_psnr(out.frames, decoded):.1f} dB vs decoded latents, "
              f"{_psnr(out.frames, clip):.1f} dB vs clip, VAE alone {_psnr(decoded, clip):.1f} dB")
        assert _psnr(out.frames, decoded) >= 25 and _psnr(out.frames, clip) >= 25


def test_a_latent_cache_from_other_inputs_is_an_error_not_reused(tmp_path, tiny_official, two_clips):
    """Cached latents are tied to the VAE, text encoder and clips they came from (cache/<name>/source.json):
    re-running an output_dir with another base model, another manifest or clips rendered again under the
    same names stops before training instead of silently training on stale latents; the same inputs reuse
    the cache (resume)."""
    from openwan.checkpoint.random_init import write_random_checkpoint
    from openwan.training import train

    cfg = write_config(tmp_path, tiny_official, two_clips, steps=1)
    train(load_config(cfg))
    source = tmp_path / "run" / "cache" / "clips" / "source.json"
    keys = json.loads(source.read_text()).keys()
    assert {"vae", "latent_statistics", "text_encoder", "tokenizer", "clips", "fps"} <= keys
    train(load_config(cfg, ["stages.0.steps=2"]))  # same inputs: the cache is reused
    # The run folder and its clips copied elsewhere together: still the same inputs, nothing re-encoded.
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(two_clips.parent, moved / "clips")
    shutil.copytree(tmp_path / "run", moved / "run")
    latent = moved / "run" / "cache" / "clips" / "latents" / "64x64x5" / "00000000.safetensors"
    stamp = latent.stat().st_mtime_ns
    train(load_config(cfg, [f"run.output_dir={json.dumps(str(moved / 'run'))}", "stages.0.steps=3",
                            f"datasets.0.manifest={json.dumps(str(moved / 'clips' / two_clips.name))}"]))
    assert latent.stat().st_mtime_ns == stamp
    other_base = write_random_checkpoint(tmp_path / "other", layout="official", seed=1)
    with pytest.raises(InputError, match=r"cache.*clips was encoded from a different text_encoder, vae"):
        train(load_config(cfg, [f"model.base={json.dumps(str(other_base))}", "stages.0.steps=3"]))
    other_clips = write_clips(tmp_path / "clips2", {"a green square moves up": moving_square((30, 220, 30), 0, -2)})
    with pytest.raises(InputError, match="different clips"):
        train(load_config(cfg, [f"datasets.0.manifest={json.dumps(str(other_clips))}", "stages.0.steps=3",
                                "stages.0.batch_size=1"]))
    # The same file names and captions, rendered again with other pixels: stale latents, not these clips'.
    write_clips(moved / "clips", {caption: moving_square((30, 30, 220), -1, 1) for caption in TWO_CLIPS})
    with pytest.raises(InputError, match="different clips"):
        train(load_config(cfg, [f"run.output_dir={json.dumps(str(moved / 'run'))}", "stages.0.steps=4",
                                f"datasets.0.manifest={json.dumps(str(moved / 'clips' / two_clips.name))}"]))
    source.unlink()  # a cache without source.json (older openwan): unknown origin
    with pytest.raises(InputError, match="no source.json"):
        train(load_config(cfg, ["stages.0.steps=3"]))


def test_a_subset_dataset_links_the_latents_another_cache_holds(tmp_path, tiny_official, two_clips, caplog):
    """A dataset that is a subset of another's manifest (``where``) takes the clips the other cache already
    encoded (same VAE, text encoder, fps, masks) instead of encoding them again, at its own positions."""
    import logging

    from openwan.training import train

    subset = textwrap.dedent("""
        [[datasets]]
        name = "down"
        manifest = "{manifest}"
        cache = true
        where = {{ caption = ["a blue square moves down"] }}
        [[stages]]
        name = "subset"
        steps = 1
        batch_size = 1
        buckets = ["64x64x5"]
        datasets = {{ down = 1.0 }}
    """).format(manifest=two_clips)
    cfg = write_config(tmp_path, tiny_official, two_clips, steps=1, extra=subset)
    with caplog.at_level(logging.INFO, logger="openwan.training.trainer"):
        train(load_config(cfg))
    cache = tmp_path / "run" / "cache"
    # the blue square is clip 1 of the full manifest and clip 0 of the subset
    full, linked = (cache / "clips" / "latents" / "64x64x5" / "00000001.safetensors",
                    cache / "down" / "latents" / "64x64x5" / "00000000.safetensors")
    assert linked.read_bytes() == full.read_bytes()
    assert "cached 0 clips of down" in caplog.text and "cached 2 clips of clips" in caplog.text
    assert len(list((cache / "down" / "text").glob("*.safetensors"))) == 1  # its caption's embedding came along
    # The subset's cache stands on its own: a rerun after the donor is gone still finds every clip.
    import shutil

    shutil.rmtree(cache / "clips")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="openwan.training.trainer"):
        train(load_config(cfg, ["stages.1.steps=2"]))
    assert "cached 0 clips of down" in caplog.text


def test_cache_filling_encodes_clips_in_batches_and_each_caption_once(tmp_path, monkeypatch):
    """Clips of a bucket go through the VAE several at a time; each clip still gets its own latents and
    mask, each new caption is encoded once, and an unreadable clip between them is skipped and counted."""
    from openwan.data.buckets import parse_bucket
    from openwan.data.dataset import ClipDataset
    from openwan.data.manifest import read_manifest
    from openwan.training import latent_cache
    from openwan.training.latent_cache import LatentCache, fill_cache

    clips = {f"a square moves {i}": moving_square((40 * i, 200, 30), i - 2, 1, frames=5) for i in range(5)}
    clips["a square moves 1 again"] = moving_square((10, 10, 250), 1, 0, frames=5)
    manifest = write_clips(tmp_path / "clips", clips)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[3]["caption"] = rows[1]["caption"]  # two clips, one caption
    masks = tmp_path / "clips" / "mask.mp4"
    write_video(np.zeros((5, 64, 64, 3), np.uint8), masks, fps=16)
    manifest.write_text("".join(json.dumps({**r, "mask": "mask.mp4"}) + "\n" for r in rows))
    (tmp_path / "clips" / "clip2.mp4").write_bytes(b"not a video")
    bucket = parse_bucket("64x64x5")
    dataset = ClipDataset(read_manifest(manifest), [bucket], seed=0, name="clips", masks=True)
    monkeypatch.setattr(latent_cache, "CACHE_BATCH_PIXELS", 2 * 5 * 64 * 64)  # 2 clips per call

    def encode_video(video):  # a stand-in VAE: per-clip arithmetic, so batching cannot change a clip's output
        calls.append(video.shape[0])
        return video[:, :, ::4, ::8, ::8] * 2

    calls, texts = [], []

    def encode_text(captions):
        texts.extend(captions)
        return [torch.full((2, 4), float(len(c))) for c in captions]

    cache = LatentCache(tmp_path / "cache")
    n = fill_cache(dataset, cache, encode_video=encode_video, encode_text=encode_text,
                   encode_mask=lambda m: m[:, :, ::4, ::8, ::8], progress=False)
    assert n == 5 and calls == [2, 2, 1]  # clip 2 is unreadable: batches {0, 1}, {3, 4}, {5}
    assert sorted(texts) == sorted({r["caption"] for i, r in enumerate(rows) if i != 2})  # each once
    assert dataset.skips.count == 1 and dataset.skips.records[0][0].endswith("clip2.mp4")
    for i in (0, 1, 3, 4, 5):
        alone = dataset[i]
        cached = cache.get_clip(i, bucket)
        assert torch.equal(cached["latents"], alone.video[:, ::4, ::8, ::8] * 2)
        assert cached["mask"].shape == (1, 2, 8, 8)
        assert torch.equal(cache.get_text(alone.caption), torch.full((2, 4), float(len(alone.caption))))
    assert cache.get_clip(2, bucket) is None
    assert fill_cache(dataset, cache, encode_video=encode_video, encode_text=encode_text,
                      encode_mask=lambda m: m, progress=False) == 0  # all cached: nothing encoded again
    assert calls == [2, 2, 1]


RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from openwan.training import load_config, train
    cfg = load_config(sys.argv[1])
    kill_at = int(sys.argv[2])
    crash_save_at = int(sys.argv[3])
    if crash_save_at:
        import openwan.training.checkpoint as ck
        real = ck.CheckpointManager._finalize
        def finalize(self, tmp, final, step):
            if step == crash_save_at:  # die after the shards are written, before COMPLETE + rename
                os.kill(os.getpid(), signal.SIGKILL)
            real(self, tmp, final, step)
        ck.CheckpointManager._finalize = finalize
    def cb(info):
        print(f"LOSS {info.step} {info.loss!r}", flush=True)
        if info.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    train(cfg, callbacks=[cb])
""")


def _run(script: Path, cfg: Path, kill_at: int = 0, crash_save_at: int = 0) -> tuple[int, dict[int, float]]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(cfg), str(kill_at), str(crash_save_at)],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode not in (0, -9):
        print(proc.stderr[-3000:])  # shown by pytest when the test fails
    losses = {}
    for line in proc.stdout.splitlines():
        if line.startswith("LOSS "):
            _, step, loss = line.split()
            losses[int(step)] = float(loss)
    return proc.returncode, losses


@pytest.mark.parametrize("cache", [True, False])
def test_sigkill_then_resume_reproduces_the_loss_sequence(tmp_path, tiny_official, two_clips, cache):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    extra = 'warmup_steps = 2\nschedule = "cosine"'
    ref_cfg = write_config(tmp_path / "ref", tiny_official, two_clips, steps=8, every=3, extra=extra, cache=cache)
    code, reference = _run(script, ref_cfg)
    assert code == 0 and sorted(reference) == list(range(1, 9))

    cfg = write_config(tmp_path / "killed", tiny_official, two_clips, steps=8, every=3, extra=extra, cache=cache)
    code, before = _run(script, cfg, kill_at=5)
    assert code == -9 and max(before) == 5  # SIGKILL after step 5; the last checkpoint is step 3
    code, after = _run(script, cfg)
    assert code == 0 and sorted(after) == [4, 5, 6, 7, 8]  # resumed from step 3
    for step in range(1, 9):
        got = after.get(step, before.get(step))
        assert got == reference[step], f"step {step}: {got!r} != {reference[step]!r}"
    # each start records what it ran with: the first from step 0, the resumed one from the checkpoint's step
    runs = [json.loads(line) for line in (tmp_path / "killed" / "run" / "environment.jsonl").read_text().splitlines()]
    assert [r["start_step"] for r in runs] == [0, 3]
    assert all(r["torch_threads"] == 1 and r["task"] == "dit" and r["config"] == str(cfg) for r in runs)


def test_crash_during_save_falls_back_to_previous_checkpoint(tmp_path, tiny_official, two_clips):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT)
    ref_cfg = write_config(tmp_path / "ref", tiny_official, two_clips, steps=6, every=2)
    _, reference = _run(script, ref_cfg)
    cfg = write_config(tmp_path / "crash", tiny_official, two_clips, steps=6, every=2)
    code, before = _run(script, cfg, crash_save_at=4)
    assert code == -9
    ckpts = tmp_path / "crash" / "run" / "checkpoints"
    assert (ckpts / "step-00000004.tmp").is_dir() and not (ckpts / "step-00000004").exists()
    code, after = _run(script, cfg)
    assert code == 0 and sorted(after) == [3, 4, 5, 6]  # resumed from step 2, the last complete one
    assert all(after[s] == reference[s] for s in after)


def test_bad_files_are_skipped_counted_and_reported(tmp_path, tiny_official):
    from openwan.training import train

    folder = tmp_path / "data"
    manifest = write_clips(folder, TWO_CLIPS)
    (folder / "corrupt.mp4").write_bytes(os.urandom(4000))
    rows = manifest.read_text() + json.dumps({"path": "corrupt.mp4", "caption": "noise"}) + "\n"
    rows += json.dumps({"path": "missing.mp4", "caption": "gone"}) + "\n"
    manifest.write_text(rows)
    cfg = load_config(write_config(tmp_path, tiny_official, manifest, steps=2, cache=False))
    result = train(cfg)
    assert result.steps == 2
    assert "2 of 4" in result.skipped and "corrupt.mp4" in result.skipped and "missing.mp4" in result.skipped


def test_empty_dataset_fails_before_training(tmp_path, tiny_official):
    from openwan.training import train

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "bad.mp4").write_bytes(b"not a video")
    manifest = folder / "m.jsonl"
    manifest.write_text(json.dumps({"path": "bad.mp4", "caption": "x"}) + "\n")
    cfg = load_config(write_config(tmp_path, tiny_official, manifest, steps=2))
    with pytest.raises(InputError, match="no usable samples"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_lora_run_trains_adapters_only_and_exports_a_lora_that_generate_loads(tmp_path, tiny_official, two_clips):
    from safetensors.torch import load_file

    from openwan.cli import main
    from openwan.training import export_checkpoint, train

    cfg = load_config(write_config(tmp_path, tiny_official, two_clips, steps=3),
                      ["model.init=\"base\"", "model.dit={}", "model.lora={rank=4}", "logging.sample_every=3",
                       "logging.sample_prompts=[\"a red square moves right\"]", "logging.sample_steps=2"])
    result = train(cfg)
    lora_file = result.export_dir
    assert lora_file.name == "lora.safetensors"
    sd = load_file(lora_file)
    assert sd and all("lora_A" in k or "lora_B" in k for k in sd)
    assert any(k.startswith("transformer.blocks.0.attn1.to_q") for k in sd)  # diffusers naming by default
    # The sample video of step 3 was written.
    assert (tmp_path / "run" / "samples" / "step-00000003" / "00.mp4").is_file()
    # Merged export: base weights + LoRA; generate --lora on the base gives the same frames.
    merged = export_checkpoint(tmp_path / "run", tmp_path / "merged", merge=True)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    common = ["--size", "64x64", "--frames", "1", "--steps", "3", "--seed", "1", "--no-progress"]
    assert main(["generate", "a red square", "--model", str(merged), "-o", str(a), *common]) == 0
    assert main(["generate", "a red square", "--model", str(tiny_official), "--lora", str(lora_file),
                 "-o", str(b), *common]) == 0
    from PIL import Image

    diff = np.abs(np.asarray(Image.open(a), np.int16) - np.asarray(Image.open(b), np.int16))
    assert diff.max() <= 1
    # Base weights were frozen: the merged model differs from the base only through the LoRA.
    base = load_file(tiny_official / "diffusion_pytorch_model.safetensors")
    merged_sd = load_file(merged / "diffusion_pytorch_model.safetensors")
    assert torch.equal(base["patch_embedding.weight"], merged_sd["patch_embedding.weight"])
    assert not torch.equal(base["blocks.0.self_attn.q.weight"], merged_sd["blocks.0.self_attn.q.weight"])


def test_cli_train_and_export(tmp_path, tiny_official, two_clips):
    from openwan.cli import main

    cfg = write_config(tmp_path, tiny_official, two_clips, steps=2)
    assert main(["train", str(cfg), "--no-progress", "--set", "optim.ema_decay=0.9"]) == 0
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    assert main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "live"), "--no-ema"]) == 0
    out = tmp_path / "x.png"
    assert main(["generate", "a red square", "--model", str(tmp_path / "live"), "--size", "64x64", "--frames", "1",
                 "--steps", "2", "-o", str(out), "--no-progress"]) == 0
    assert out.is_file()
    # A config error names the key and exits 1 without a traceback.
    assert main(["train", str(cfg), "--set", "stages.0.batch_sise=2"]) == 1


def test_a_fine_tune_keeps_its_base_sampling_defaults(tmp_path, tiny_official, two_clips):
    """A fine-tuned small model must generate at its base's native size and frames: without the base's
    sample_config.json, `generate --model <export>` fell back to Wan's 832x480, 81 frames, 50 steps."""
    import shutil

    from openwan import load_pipeline
    from openwan.training import train

    base = tmp_path / "base"
    shutil.copytree(tiny_official, base)
    defaults = {"size": [64, 48], "frames": 5, "steps": 3, "shift": 2.0, "guidance": 2.5, "negative_prompt": ""}
    (base / "sample_config.json").write_text(json.dumps(defaults), encoding="utf-8")
    fine = train(load_config(write_config(tmp_path / "fine", base, two_clips, steps=1),
                             ["model.init=\"base\"", "model.dit={}"]))
    assert json.loads((fine.export_dir / "sample_config.json").read_text(encoding="utf-8")) == defaults
    d = load_pipeline(fine.export_dir).defaults
    assert (d.size, d.frames, d.steps, d.guidance) == ((64, 48), 5, 3, 2.5)
    # A DiT trained from scratch is not its base's model: its native size comes from its data, not the base.
    scratch = train(load_config(write_config(tmp_path / "scratch", base, two_clips, steps=1)))
    assert not (scratch.export_dir / "sample_config.json").exists()


def test_metrics_log_the_recent_throughput_beside_the_stage_average(tmp_path, tiny_official, two_clips):
    """``recent_samples_per_s`` covers only the steps since the previous row, so a slowdown late in a stage
    shows there at once while the stage average (``samples_per_s``) hides it."""
    import time

    from openwan.training import train

    slow_from = 3

    def slow_down(info):
        if info.step >= slow_from:
            time.sleep(1.0)

    train(load_config(write_config(tmp_path, tiny_official, two_clips, steps=6)), callbacks=[slow_down])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "recent_samples_per_s" in r]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # logging.every = 1: one step per row
    batch = 2
    for r in rows[slow_from:]:  # each of these rows' steps waited 1 s after the previous row
        assert r["recent_samples_per_s"] < batch / 1.0
        assert r["recent_samples_per_s"] < r["samples_per_s"]
    assert rows[1]["recent_samples_per_s"] > 2 * rows[-1]["recent_samples_per_s"]


@pytest.mark.parametrize("overrides", [
    ["run.precision=\"bf16\""],
    ["model.gradient_checkpointing=true", "model.activation_offload=true"],
    ["flow.timesteps=\"logit_normal\"", "flow.shift=3.0", "flow.text_dropout=0.5", "optim.ema_decay=0.99"],
])
def test_training_options_run_end_to_end(tmp_path, tiny_official, two_clips, overrides):
    from openwan.training import train

    result = train(load_config(write_config(tmp_path, tiny_official, two_clips, steps=3, cache=False), overrides))
    assert result.steps == 3 and all(np.isfinite(result.losses))
    assert (result.export_dir / "diffusion_pytorch_model.safetensors").is_file()


def test_a_stage_draws_noise_levels_from_its_own_distribution(tmp_path, tiny_official, two_clips, monkeypatch):
    from openwan.training import train, trainer

    drawn = []

    def recording(n, flow, generator):
        drawn.append(real(n, flow, generator))
        return drawn[-1]

    real = trainer.sample_sigmas
    monkeypatch.setattr(trainer, "sample_sigmas", recording)
    late = """
        [[stages]]
        name = "high-noise"
        steps = 3
        batch_size = 2
        buckets = ["64x64x5"]
        datasets = { clips = 1.0 }
        flow = { timesteps = "logit_normal", logit_mean = 6.0 }
    """
    train(load_config(write_config(tmp_path, tiny_official, two_clips, steps=3, extra=textwrap.dedent(late))))
    first, second = torch.cat(drawn[:3]), torch.cat(drawn[3:])
    assert len(drawn) == 6
    assert first.min() < 0.5  # [flow]: stratified uniform, one draw of each batch below 0.5
    assert second.min() > 0.9  # the stage's own: sigmoid(N(6, 1))


def test_a_dataset_draws_noise_levels_from_its_own_distribution_on_top_of_its_stages(
        tmp_path, tiny_official, two_clips, monkeypatch):
    """E.g. camera pans trained where their wall is formed while the stage centres the rest at high σ."""
    from openwan.training import train, trainer

    drawn = []

    def recording(n, flow, generator):
        drawn.append((flow.logit_mean, real(n, flow, generator)))
        return drawn[-1][1]

    real = trainer.sample_sigmas
    monkeypatch.setattr(trainer, "sample_sigmas", recording)
    late = f"""
        [[datasets]]
        name = "low"
        manifest = "{two_clips}"
        cache = true
        flow = {{ logit_mean = -6.0 }}
        [[stages]]
        name = "high-noise"
        steps = 8
        batch_size = 2
        buckets = ["64x64x5"]
        datasets = {{ clips = 0.5, low = 0.5 }}
        flow = {{ timesteps = "logit_normal", logit_mean = 6.0 }}
    """
    train(load_config(write_config(tmp_path, tiny_official, two_clips, steps=1, extra=textwrap.dedent(late))))
    late_draws = drawn[1:]
    assert len(late_draws) == 8 and {m for m, _ in late_draws} == {6.0, -6.0}  # both datasets drawn
    for mean, sigma in late_draws:  # the stage's logit-normal, the dataset's mean: sigmoid(N(-6, 1)) < 0.1
        assert (sigma > 0.9).all() if mean == 6.0 else (sigma < 0.1).all()
    with pytest.raises(InputError, match=r"datasets\[0\]\.flow\.logit_std must be > 0"):
        load_config(write_config(tmp_path / "bad", tiny_official, two_clips), ["datasets.0.flow={logit_std=0.0}"])
    with pytest.raises(InputError, match=r"datasets\[0\]\.flow is only for task = 'dit'"):
        load_config(write_config(tmp_path / "bad", tiny_official, two_clips, cache=False),
                    ["datasets.0.flow={logit_mean=1.0}", 'run.task="vae"'])


def test_gradient_checkpointing_gives_the_same_losses(tmp_path, tiny_official, two_clips):
    from openwan.training import train

    plain = train(load_config(write_config(tmp_path / "a", tiny_official, two_clips, steps=3)))
    ckpt = train(load_config(write_config(tmp_path / "b", tiny_official, two_clips, steps=3),
                             ["model.gradient_checkpointing=true"]))
    np.testing.assert_allclose(plain.losses, ckpt.losses, rtol=1e-5)


def test_dataloader_workers_give_the_same_losses(tmp_path, tiny_official, two_clips):
    from openwan.training import train

    a = train(load_config(write_config(tmp_path / "a", tiny_official, two_clips, steps=3, cache=False)))
    b = train(load_config(write_config(tmp_path / "b", tiny_official, two_clips, steps=3, cache=False)), num_workers=2)
    assert a.losses == b.losses


def test_compiled_training_gives_the_eager_losses_and_exports_plain_keys(tmp_path, tiny_official, two_clips):
    """run.compile traces the training forward only: same losses (fp32, to rounding), same checkpoint layout."""
    from torch._dynamo.utils import counters

    from openwan.training import train

    eager = train(load_config(write_config(tmp_path / "a", tiny_official, two_clips, steps=3)))
    counters.clear()
    compiled = train(load_config(write_config(tmp_path / "b", tiny_official, two_clips, steps=3), ["run.compile=true"]))
    assert counters["stats"]["unique_graphs"] >= 1  # the forward really went through dynamo
    np.testing.assert_allclose(eager.losses, compiled.losses, rtol=1e-4)
    from safetensors import safe_open

    def keys(export_dir: Path) -> set[str]:
        with safe_open(str(export_dir / "diffusion_pytorch_model.safetensors"), "pt") as f:
            return set(f.keys())

    assert keys(compiled.export_dir) == keys(eager.export_dir)
    assert not any(k.startswith("_orig_mod") for k in keys(compiled.export_dir))


def test_a_torch_compile_that_cannot_work_fails_before_the_latent_caching(tmp_path, tiny_official, two_clips,
                                                                         monkeypatch):
    from openwan.training import train

    def no_compiler(fn):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    cfg = load_config(write_config(tmp_path, tiny_official, two_clips), ["run.compile=true"])
    with pytest.raises(InputError, match="run.compile = true, but torch.compile does not work on cpu"):
        train(cfg)
    assert not (tmp_path / "run" / "cache").exists()


def test_compile_is_rejected_for_the_vae(tmp_path, tiny_official, two_clips):
    cfg = write_config(tmp_path, tiny_official, two_clips)
    with pytest.raises(InputError, match="run.compile"):
        load_config(cfg, ["run.compile=true", "run.task=vae"])
