"""Mask-weighted flow matching: manifest ``mask`` videos -> latent-grid masks -> a weighted DiT loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_trainer import TWO_CLIPS, moving_square, write_clips, write_config
from test_vae_trainer import short_vae_config

from openwan.data.buckets import parse_bucket
from openwan.data.dataset import MISSING, ClipDataset, Sample, Skipped
from openwan.data.manifest import read_manifest, write_manifest
from openwan.errors import InputError
from openwan.media import write_video
from openwan.training.config import load_config
from openwan.training.flow_matching import flow_matching_loss, latent_mask


def test_latent_mask_takes_the_maximum_over_each_cells_causal_frames_and_pixels():
    mask = torch.zeros(1, 1, 9, 16, 16)
    mask[0, 0, 0, 0, 0] = 0.5   # frame 0 is latent frame 0 on its own
    mask[0, 0, 3, 10, 5] = 1.0  # frames 1-4 -> latent frame 1; pixel (10, 5) -> cell (1, 0)
    mask[0, 0, 8, 15, 15] = 0.25  # frames 5-8 -> latent frame 2
    grid = latent_mask(mask, temporal=4, spatial=8)
    assert grid.shape == (1, 1, 3, 2, 2)
    expected = torch.zeros(3, 2, 2)
    expected[0, 0, 0], expected[1, 1, 0], expected[2, 1, 1] = 0.5, 1.0, 0.25
    torch.testing.assert_close(grid[0, 0], expected)
    with pytest.raises(InputError, match="4n\\+1"):
        latent_mask(torch.zeros(1, 1, 8, 16, 16), temporal=4, spatial=8)


def test_weighted_loss_is_the_weighted_mean_and_uniform_weights_give_plain_mse():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 3, 2, 2, generator=g), torch.randn(2, 4, 3, 2, 2, generator=g)
    plain = flow_matching_loss(pred, target)
    torch.testing.assert_close(flow_matching_loss(pred, target, torch.full((2, 1, 3, 2, 2), 7.0)), plain)
    weight = torch.ones(2, 1, 3, 2, 2)
    weight[1, 0, 2, 1, 1] = 1e6  # one cell dominates: the loss becomes that cell's mean over channels
    cell = (pred[1, :, 2, 1, 1] - target[1, :, 2, 1, 1]).square().mean()
    torch.testing.assert_close(flow_matching_loss(pred, target, weight), cell, rtol=1e-3, atol=1e-5)


def test_manifest_mask_is_resolved_written_relative_and_checked(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"path": "a.mp4", "caption": "x", "mask": "masks/a.mp4"}) + "\n")
    [entry] = read_manifest(tmp_path / "train.jsonl")
    assert entry.mask == tmp_path / "masks" / "a.mp4"
    write_manifest([entry], tmp_path / "copy.jsonl")
    assert json.loads((tmp_path / "copy.jsonl").read_text())["mask"] == "masks/a.mp4"
    assert read_manifest(tmp_path / "copy.jsonl")[0].mask == entry.mask
    (tmp_path / "bad.jsonl").write_text(json.dumps({"path": "a.png", "caption": "x", "mask": "m.mp4"}) + "\n")
    with pytest.raises(InputError, match="bad.jsonl line 1: 'mask' is supported for videos only"):
        read_manifest(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text(json.dumps({"path": "a.mp4", "caption": "x", "mask": 3}) + "\n")
    with pytest.raises(InputError, match="'mask' must be a non-empty path string"):
        read_manifest(tmp_path / "bad2.jsonl")


def _square_mask(video: np.ndarray) -> np.ndarray:
    """White where the square differs from the grey background."""
    covered = np.abs(video.astype(np.int16) - 96).max(axis=-1) > 0
    return np.repeat((covered * 255).astype(np.uint8)[..., None], 3, axis=-1)


def _masked_clips(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (caption, video) in enumerate({"a red square moves right": moving_square((220, 30, 30), 2, 0),
                                          "a blue square moves down": moving_square((30, 30, 220), 0, 2)}.items()):
        write_video(video, folder / f"clip{i}.mp4")
        write_video(_square_mask(video), folder / f"clip{i}.mask.mp4")
        rows.append({"path": f"clip{i}.mp4", "caption": caption, "mask": f"clip{i}.mask.mp4"})
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "train.jsonl"


def test_synth_world_masks_cover_exactly_the_objects_at_the_clips_frames(tmp_path):
    from openwan.data.synth_world import (
        COLOURS,
        SynthWorldConfig,
        generate_dataset,
        render_clip_with_mask,
        sample_spec,
    )

    config = SynthWorldConfig(num_clips=2, seed=3)
    manifest = generate_dataset(tmp_path, config)
    entries = read_manifest(manifest)
    assert all(e.mask is not None and e.mask.is_file() for e in entries)
    ds = ClipDataset(entries, [parse_bucket("64x64x17")], masks=True)
    for i, entry in enumerate(entries):
        sample = ds[i]
        assert isinstance(sample, Sample) and sample.mask.shape == (1, 17, 64, 64)
        frames, mask, _ = render_clip_with_mask(sample_spec(config, i))
        decoded = sample.mask[0].numpy()
        assert np.abs(decoded - mask / 255.0).mean() < 0.01  # H.264 keeps a binary mask nearly exact
        assert ((decoded > 0.5).sum(axis=(1, 2)) >= 20).all()  # every frame shows its object
        # the mask marks the object: inside it the frame has the object's colour, not the background's
        rgbs = np.array([COLOURS[entry.extra[k]] for k in ("colour", "colour2") if k in entry.extra], float)
        inside = frames[mask == 255].astype(float)
        assert np.abs(inside[:, None] - rgbs[None]).max(axis=-1).min(axis=1).mean() < 20


def test_an_unreadable_mask_skips_its_clip_like_an_unreadable_video(tmp_path):
    manifest = _masked_clips(tmp_path)
    (tmp_path / "clip1.mask.mp4").unlink()
    ds = ClipDataset(read_manifest(manifest), [parse_bucket("64x64x5")], masks=True)
    assert isinstance(ds[0], Sample) and ds[0].mask.max() == 1.0
    item = ds[1]
    assert isinstance(item, Skipped) and item.reason == MISSING and "mask of" in item.detail
    plain = ClipDataset(read_manifest(manifest), [parse_bucket("64x64x5")])  # masks not read: no effect
    assert isinstance(plain[1], Sample) and plain[1].mask is None


@pytest.mark.parametrize("cache", [True, False])
def test_mask_weighted_training_runs_caches_latent_masks_and_logs_plain_mse(tmp_path, tiny_official, cache):
    from openwan.training import train

    manifest = _masked_clips(tmp_path / "clips")
    cfg = write_config(tmp_path, tiny_official, manifest, steps=2, cache=cache)
    result = train(load_config(cfg, ["flow.mask_weight=10.0"]))
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "loss" in r]
    assert logged and all("mse" in r and r["mse"] > 0 for r in logged)
    assert any(abs(r["mse"] - r["loss"]) > 1e-6 for r in logged)  # the weighted loss is not the plain one
    if cache:
        source = json.loads((tmp_path / "run" / "cache" / "clips" / "source.json").read_text())
        assert source["masks"] is True
        cached = load_file(tmp_path / "run" / "cache" / "clips" / "latents" / "64x64x5" / "00000000.safetensors")
        grid = cached["mask"]
        assert grid.shape == (1, *cached["latents"].shape[1:])
        # the red 16-px square spans rows 8-23 (latent rows 1-2) while it moves right
        assert grid[0, :, 1].amax(dim=-1).min() > 0.95 and grid[0, :, 2].amax(dim=-1).min() > 0.95
        assert grid[0, :, 0].max() < 0.05 and grid[0, :, 3:].max() < 0.05


def test_mask_weight_needs_masks_in_the_manifest_and_a_dit_task(tmp_path, tiny_official):
    from openwan.training import train

    cfg = write_config(tmp_path, tiny_official, write_clips(tmp_path / "clips", TWO_CLIPS), steps=1)
    with pytest.raises(InputError, match="mask_weight.*none of its manifests has a 'mask' field"):
        train(load_config(cfg, ["flow.mask_weight=5.0"]))
    with pytest.raises(InputError, match="flow.mask_weight must be a finite number > 0"):
        load_config(cfg, ["flow.mask_weight=0.0"])
    with pytest.raises(InputError, match="flow.mask_weight is only for task = 'dit'"):
        load_config(cfg, ["flow.mask_weight=2.0", "run.task=\"vae\""])


def test_a_datasets_own_mask_weight_replaces_flow_mask_weight_for_its_clips(tmp_path, tiny_official):
    """A dataset's ``mask_weight`` (e.g. < 1 for camera pans, which only the background shows) is the one
    its batches use: set alone it weighs the loss, and 1 makes its batches plain MSE under flow.mask_weight."""
    from openwan.training import train

    manifest = _masked_clips(tmp_path / "clips")

    def logged_rows(run: str, overrides: list[str]) -> list[dict]:
        cfg = write_config(tmp_path / run, tiny_official, manifest, steps=2, cache=True)
        result = train(load_config(cfg, overrides))
        assert len(result.losses) == 2 and all(np.isfinite(result.losses))
        rows = [json.loads(line) for line in (tmp_path / run / "run" / "metrics.jsonl").read_text().splitlines()]
        return [r for r in rows if "loss" in r]

    weighted = logged_rows("own", ["datasets.0.mask_weight=0.2"])
    assert len(weighted) == 2 and all(abs(r["mse"] - r["loss"]) > 1e-6 for r in weighted)
    plain = logged_rows("plain", ["flow.mask_weight=10.0", "datasets.0.mask_weight=1.0"])
    assert len(plain) == 2 and all("mse" not in r for r in plain)
    for bad in ("0.0", "nan"):
        with pytest.raises(InputError, match=r"datasets\[0\].mask_weight must be a finite number > 0"):
            load_config(write_config(tmp_path / "bad", tiny_official, manifest, steps=1),
                        [f"datasets.0.mask_weight={bad}"])
    with pytest.raises(InputError, match=r"datasets\[0\].mask_weight is only for task = 'dit'"):
        load_config(write_config(tmp_path / "bad", tiny_official, manifest, steps=1, cache=False),
                    ["datasets.0.mask_weight=2.0", "run.task=\"vae\""])


# ---- the VAE: per-pixel mask weights --------------------------------------------------------------------------------


def test_vae_mask_weights_dilate_the_mask_and_weigh_the_pixel_losses():
    from openwan.training.vae_losses import l1_loss, mask_weights, mse_loss

    mask = torch.zeros(1, 1, 2, 8, 8)
    mask[0, 0, 1, 4, 4] = 1.0
    w = mask_weights(mask, 10.0)
    assert w[0, 0, 1, 4, 4] == 10.0 and w.sum() == 10.0 + 127
    wide = mask_weights(mask, 10.0, dilation=1)
    assert (wide[0, 0, 1, 3:6, 3:6] == 10.0).all() and wide.sum() == 9 * 10.0 + 119
    assert (wide[0, 0, 0] == 1.0).all()  # dilation is within a frame, not across frames
    g = torch.Generator().manual_seed(0)
    recon, target = torch.randn(1, 3, 2, 8, 8, generator=g), torch.randn(1, 3, 2, 8, 8, generator=g)
    for loss in (l1_loss, mse_loss):
        torch.testing.assert_close(loss(recon, target, torch.full_like(mask, 3.0)), loss(recon, target))
        pixel = loss(recon[0, :, 1, 4, 4], target[0, :, 1, 4, 4])
        torch.testing.assert_close(loss(recon, target, mask_weights(mask, 1e7)), pixel, rtol=1e-3, atol=1e-5)
    with pytest.raises(InputError, match="batch, 1, frames, height, width"):
        mask_weights(torch.zeros(1, 3, 2, 8, 8), 2.0)


def test_vae_objective_weighs_masked_pixels_and_logs_the_plain_losses():
    from openwan.configs import VAEConfig
    from openwan.models.vae import WanVAE
    from openwan.training.vae_objective import VAELossConfig, VAEObjective

    torch.manual_seed(0)
    vae = WanVAE(VAEConfig(dim=8, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1, latents_mean=(0.0,) * 4,
                           latents_std=(1.0,) * 4))
    video = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    mask = torch.zeros(1, 1, 5, 32, 32)
    mask[..., 8:16, 8:16] = 1.0
    config = VAELossConfig(l1=1.0, l2=2.0, kl=0.0, mask_weight=1e7, sample_posterior=False)
    out = VAEObjective(vae, config).generator_step(video, 0, mask=mask)
    inside = (slice(None), slice(None), slice(None), slice(8, 16), slice(8, 16))
    err = out.recon[inside] - video[inside]
    torch.testing.assert_close(out.loss, err.abs().mean() + 2.0 * err.square().mean(), rtol=1e-3, atol=1e-5)
    assert out.logs["l1"] == pytest.approx((out.recon - video).abs().mean().item(), rel=1e-4)
    assert out.logs["l2"] == pytest.approx((out.recon - video).square().mean().item(), rel=1e-4)
    with pytest.raises(InputError, match="needs the clips' mask"):
        VAEObjective(vae, config).generator_step(video, 0)
    with pytest.raises(InputError, match="mask_weight must be a finite number > 0"):
        VAELossConfig(mask_weight=0.0)
    with pytest.raises(InputError, match="mask_dilation must be a whole number"):
        VAELossConfig(mask_dilation=-1)


def _vae_config(tmp_path: Path, base: Path, manifest: Path, loss: str) -> Path:
    return short_vae_config(tmp_path, base, manifest, size=64, sections=f"[vae.loss]\n{loss}")


def test_mask_weighted_vae_training_reads_masks_in_image_and_video_stages(tmp_path, tiny_official, monkeypatch):
    from openwan.training import train, vae_objective

    seen = []
    original = vae_objective.VAEObjective.generator_step

    def spy(self, video, step, generator=None, mask=None):
        seen.append((tuple(video.shape), None if mask is None else tuple(mask.shape), float(mask.max())))
        return original(self, video, step, generator, mask)

    monkeypatch.setattr(vae_objective.VAEObjective, "generator_step", spy)
    manifest = _masked_clips(tmp_path / "clips")
    cfg = _vae_config(tmp_path, tiny_official, manifest, "mask_weight = 10.0\nmask_dilation = 2")
    result = train(load_config(cfg))
    assert result.steps == 3 and all(np.isfinite(result.losses))
    # image stage: single frames and their masks; video stage: the clip and its mask; the square is in each
    image, video = ((2, 3, 1, 64, 64), (2, 1, 1, 64, 64)), ((1, 3, 5, 64, 64), (1, 1, 5, 64, 64))
    assert [s[:2] for s in seen] == [image] * 2 + [video]
    assert all(s[2] > 0.9 for s in seen)
    rows = [json.loads(line) for line in (tmp_path / "vae-run" / "metrics.jsonl").read_text().splitlines()]
    assert all("l1" in r and "l2" not in r for r in rows if "loss" in r)


def test_vae_mask_weight_needs_masks_in_the_manifest(tmp_path, tiny_official):
    from openwan.training import train

    manifest = write_clips(tmp_path / "clips", TWO_CLIPS)
    with pytest.raises(InputError, match="vae.loss.mask_weight.*none of its manifests has a 'mask' field"):
        train(load_config(_vae_config(tmp_path, tiny_official, manifest, "mask_weight = 4.0")))
    with pytest.raises(InputError, match="mask_weight must be a finite number > 0"):
        train(load_config(_vae_config(tmp_path, tiny_official, manifest, "mask_weight = -2.0")))
