"""Wan-VAE: parity with diffusers' AutoencoderKLWan, checkpoint key map, config inference, input checks."""

from __future__ import annotations

import pytest
import torch

from openwan.checkpoint.io import load_into
from openwan.checkpoint.keymap_vae import (
    vae_config_from_diffusers,
    vae_config_from_state_dict,
    vae_config_to_diffusers,
    vae_diffusers_to_official,
    vae_official_to_diffusers,
)
from openwan.configs import LATENTS_MEAN, LATENTS_STD, VAEConfig
from openwan.errors import CheckpointError, InputError
from openwan.models.vae import WanVAE

diffusers = pytest.importorskip("diffusers")

# 4 levels with the official temporal pattern, so the 1, 4, 4, ... chunking and both temporal
# resamplers ('Rep' first chunk included) are exercised; channels 8-32 keep it fast.
TINY = VAEConfig(
    dim=8, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
    latents_mean=(0.3, -0.5, 0.1, 1.2), latents_std=(1.7, 0.6, 2.2, 1.1),
)
DEFAULT_PARAMS = 126_892_531  # Wan2.1_VAE.pth


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial random weights: the official init zeroes projections that would hide bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("gamma"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)  # unit gain per layer
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def video(frames: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def ours() -> WanVAE:
    return randomize(WanVAE(TINY)).eval()


@pytest.fixture(scope="module")
def reference(ours):
    ref = diffusers.AutoencoderKLWan(**vae_config_to_diffusers(TINY)).eval()
    ref.load_state_dict(vae_official_to_diffusers(ours.state_dict()), strict=True)
    return ref


# ---- parity with diffusers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 5, 9, 17])
def test_encode_matches_diffusers(ours, reference, frames):
    x = video(frames)
    mu, logvar = ours.encode_distribution(x)
    with torch.no_grad():
        dist = reference.encode(x).latent_dist
    assert mu.shape == (1, TINY.z_dim, 1 + (frames - 1) // 4, 4, 4)
    assert mu.std() > 0.05  # a live signal, not a vanishing one
    assert rel_err(mu, dist.mean) <= 1e-4
    assert rel_err(logvar, dist.logvar) <= 1e-4
    assert torch.allclose(ours.encode(x), ours.normalize(mu))


@pytest.mark.parametrize("latent_frames", [1, 2, 3, 5])
def test_decode_matches_diffusers(ours, reference, latent_frames):
    g = torch.Generator().manual_seed(latent_frames)
    z = torch.randn(1, TINY.z_dim, latent_frames, 4, 4, generator=g)
    seen = []
    out = ours.decode(z, progress=lambda done, total: seen.append((done, total)))
    with torch.no_grad():
        ref = reference.decode(ours.denormalize(z)).sample
    frames = 1 + 4 * (latent_frames - 1)  # 1, 5, 9, 17
    assert out.shape == ref.shape == (1, 3, frames, 32, 32)
    assert out.abs().max() <= 1.0
    assert (out.abs() < 1).float().mean() > 0.5  # mostly unclamped, so the comparison means something
    assert rel_err(out, ref) <= 1e-4
    assert seen == [(i + 1, latent_frames) for i in range(latent_frames)]


# ---- streaming / causality ---------------------------------------------------------------------------------------

def test_encode_is_causal(ours):
    x = video(13)
    full, _ = ours.encode_distribution(x)
    for frames in (1, 5, 9):
        prefix, _ = ours.encode_distribution(x[:, :, :frames])
        torch.testing.assert_close(prefix, full[:, :, : prefix.shape[2]], rtol=1e-5, atol=1e-6)


def test_decode_is_causal(ours):
    z = torch.randn(1, TINY.z_dim, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    full = ours.decode(z)
    prefix = ours.decode(z[:, :, :2])
    torch.testing.assert_close(prefix, full[:, :, :5], rtol=1e-5, atol=1e-6)
    # ...and later frames do depend on the past (the cache is really carried)
    alone = ours.decode(z[:, :, 1:2])
    assert rel_err(alone[:, :, 0], full[:, :, 1]) > 1e-2


def test_feature_cache_holds_at_most_two_frames_per_layer(ours):
    from openwan.models.vae import FeatureCache

    cache = FeatureCache()
    z = torch.randn(1, TINY.z_dim, 3, 4, 4)
    for i in range(3):
        ours.decoder(ours.conv2(z[:, :, i : i + 1]), cache)
    kept = [cache.past(m) for m in ours.decoder.modules() if cache.past(m) is not None]
    assert len(kept) > 10 and max(t.shape[2] for t in kept) <= 2


def test_batch_equals_single_samples(ours):
    x = torch.cat([video(5, seed=1), video(5, seed=2)])
    z = ours.encode(x)
    torch.testing.assert_close(z[1:], ours.encode(x[1:]), rtol=1e-5, atol=1e-6)
    out = ours.decode(z)
    torch.testing.assert_close(out[1:], ours.decode(z[1:]), rtol=1e-5, atol=1e-6)


# ---- state dict, loading, config ----------------------------------------------------------------------------------

def test_default_param_count_and_keys_on_meta():
    with torch.device("meta"):
        model = WanVAE()
    assert sum(p.numel() for p in model.parameters()) == DEFAULT_PARAMS
    keys = set(model.state_dict())
    assert "latents_mean" not in keys and "latents_std" not in keys
    assert {k.split(".")[0] for k in keys} == {"encoder", "conv1", "conv2", "decoder"}
    for key in ("encoder.conv1.weight", "encoder.downsamples.0.residual.0.gamma",
                "encoder.downsamples.2.resample.1.weight",
                "encoder.downsamples.5.time_conv.weight", "encoder.middle.1.to_qkv.weight", "encoder.head.0.gamma",
                "encoder.head.2.weight", "decoder.upsamples.3.time_conv.weight", "decoder.upsamples.4.shortcut.weight",
                "decoder.upsamples.11.resample.1.weight", "decoder.head.2.bias", "conv1.weight", "conv2.weight"):
        assert key in keys, key


def test_meta_build_then_load(ours):
    with torch.device("meta"):
        model = WanVAE(TINY)
    load_into(model, ours.state_dict(), source="test")
    model.reset_buffers("cpu")
    z = torch.randn(1, TINY.z_dim, 2, 4, 4)
    torch.testing.assert_close(model.decode(z), ours.decode(z), rtol=0, atol=0)
    torch.testing.assert_close(model.latents_std, torch.tensor(TINY.latents_std))


def test_keymap_matches_diffusers_and_round_trips():
    with torch.device("meta"):
        official = WanVAE().state_dict()
        ref = diffusers.AutoencoderKLWan().state_dict()
    converted = vae_official_to_diffusers(official)
    assert set(converted) == set(ref)
    assert all(converted[k].shape == ref[k].shape for k in ref)
    back = vae_diffusers_to_official(ref)
    assert set(back) == set(official)
    assert all(back[k].shape == official[k].shape for k in official)
    round_trip = vae_diffusers_to_official(converted)
    assert list(round_trip) == list(official)
    assert all(round_trip[k] is official[k] for k in official)  # renamed, never copied


def test_keymap_refuses_decoder_attention():
    with torch.device("meta"):
        cfg = VAEConfig(dim=8, z_dim=4, attn_scales=(1.0,), latents_mean=(0.0,) * 4, latents_std=(1.0,) * 4)
        sd = WanVAE(cfg).state_dict()
    with pytest.raises(CheckpointError, match="attention"):
        vae_official_to_diffusers(sd)


@pytest.mark.parametrize("cfg", [
    VAEConfig(),
    TINY,
    VAEConfig(dim=12, z_dim=6, dim_mult=(1, 2, 2, 3), num_res_blocks=1, temporal_downsample=(True, False, True),
              attn_scales=(0.5,), latents_mean=(0.0,) * 6, latents_std=(1.0,) * 6),
])
def test_config_from_state_dict(cfg):
    with torch.device("meta"):
        sd = WanVAE(cfg).state_dict()
    got = vae_config_from_state_dict(sd)
    if cfg.z_dim == 16:
        assert got == cfg  # the released statistics
    else:
        assert got.latents_mean == (0.0,) * cfg.z_dim and got.latents_std == (1.0,) * cfg.z_dim
        assert got.dim == cfg.dim and got.z_dim == cfg.z_dim and got.dim_mult == cfg.dim_mult
        assert got.num_res_blocks == cfg.num_res_blocks and got.attn_scales == cfg.attn_scales
        assert got.temporal_downsample == cfg.temporal_downsample
    if not cfg.attn_scales:  # diffusers layout is inferred the same way
        assert vae_config_from_state_dict(vae_official_to_diffusers(sd)) == got


def test_config_to_and_from_diffusers():
    d = vae_config_to_diffusers(TINY)
    assert vae_config_from_diffusers(d) == TINY
    with torch.device("meta"):
        ref = diffusers.AutoencoderKLWan(**d)
    assert dict(ref.config)["temperal_downsample"] == list(TINY.temporal_downsample)
    default = vae_config_from_diffusers({"_class_name": "AutoencoderKLWan"})
    assert default == VAEConfig() and default.latents_mean == LATENTS_MEAN and default.latents_std == LATENTS_STD
    with pytest.raises(CheckpointError, match="is_residual"):
        vae_config_from_diffusers({"base_dim": 160, "z_dim": 48, "is_residual": True, "patch_size": 2})


# ---- inputs and normalisation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, match", [
    ((1, 3, 10, 32, 32), r"10 frames.*9 or 13"),
    ((1, 3, 0, 32, 32), r"0 frames"),
    ((1, 3, 5, 100, 32), r"height 100.*96 or 104"),
    ((1, 3, 5, 32, 4), r"width 4.*use 8"),
    ((3, 5, 32, 32), r"\[batch, 3, frames"),
    ((1, 4, 5, 32, 32), r"\[batch, 3, frames"),
])
def test_bad_video_raises_input_error(ours, shape, match):
    with pytest.raises(InputError, match=match):
        ours.encode(torch.zeros(shape))


def test_bad_latents_raise_input_error(ours):
    with pytest.raises(InputError, match="latents"):
        ours.decode(torch.zeros(1, TINY.z_dim + 1, 2, 4, 4))


def test_normalize_denormalize_are_inverse(ours):
    mu = torch.randn(2, TINY.z_dim, 3, 4, 5)
    torch.testing.assert_close(ours.denormalize(ours.normalize(mu)), mu)
    mean = torch.tensor(TINY.latents_mean).view(1, -1, 1, 1, 1).expand_as(mu)
    torch.testing.assert_close(ours.normalize(mean), torch.zeros_like(mu))


def test_bf16_runs_close_to_fp32(ours):
    x = video(5)
    z32 = ours.encode(x)
    out32 = ours.decode(z32)
    half = randomize(WanVAE(TINY)).to(torch.bfloat16).eval()
    z16 = half.encode(x.bfloat16())
    out16 = half.decode(z16)
    assert z16.dtype == out16.dtype == torch.bfloat16
    assert rel_err(z16, z32) < 0.05 and rel_err(out16, out32) < 0.05
