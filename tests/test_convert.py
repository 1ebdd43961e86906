"""Layout conversion: lossless round trip, and our diffusers output loads into diffusers' own classes."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
import torch
from conftest import SMALL

from openwan.checkpoint.convert import convert_checkpoint
from openwan.checkpoint.io import read_state_dict, write_safetensors
from openwan.checkpoint.layout import OFFICIAL_DIT, OFFICIAL_T5, OFFICIAL_VAE
from openwan.cli import main
from openwan.errors import InputError


def _assert_same_state_dict(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_official_to_diffusers_to_official_is_bit_exact(tiny_official, tmp_path):
    diff = tmp_path / "d"
    back = tmp_path / "o"
    assert main(["convert", str(tiny_official), str(diff), "--to", "diffusers"]) == 0
    assert main(["convert", str(diff), str(back), "--to", "official"]) == 0
    for name in (OFFICIAL_DIT, OFFICIAL_VAE, OFFICIAL_T5):
        _assert_same_state_dict(read_state_dict(tiny_official / name), read_state_dict(back / name))
    assert json.loads((tiny_official / "config.json").read_text()) == json.loads((back / "config.json").read_text())
    cmp = filecmp.dircmp(tiny_official / "google/umt5-xxl", back / "google/umt5-xxl")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only


def test_diffusers_output_loads_strictly_into_diffusers_classes(tiny_diffusers):
    from diffusers import AutoencoderKLWan, WanPipeline, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    for cls, sub in ((WanTransformer3DModel, "transformer"), (AutoencoderKLWan, "vae")):
        model, info = cls.from_pretrained(tiny_diffusers / sub, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        ours = read_state_dict(next((tiny_diffusers / sub).glob("*.safetensors")))
        _assert_same_state_dict(ours, {k: v for k, v in model.state_dict().items()})
    te, info = UMT5EncoderModel.from_pretrained(tiny_diffusers / "text_encoder", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    pipe = WanPipeline.from_pretrained(tiny_diffusers)
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert pipe.scheduler.config.prediction_type == "flow_prediction"


def test_convert_refuses_a_non_empty_destination(tiny_official, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        convert_checkpoint(tiny_official, tmp_path / "x", to="diffusers")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_single_comfyui_file_with_separate_components(tiny_official, tmp_path):
    from openwan import load_pipeline

    sd = read_state_dict(tiny_official / OFFICIAL_DIT)
    single = tmp_path / "wan_tiny_comfy.safetensors"
    write_safetensors({f"model.diffusion_model.{k}": v for k, v in sd.items()}, single)
    pipe = load_pipeline(single, device="cpu", vae=tiny_official / OFFICIAL_VAE,
                         text_encoder=tiny_official / OFFICIAL_T5, tokenizer=tiny_official / "google/umt5-xxl")
    ref = load_pipeline(tiny_official, device="cpu")
    assert pipe.dit.config == ref.dit.config
    a = pipe.generate("a tree", progress=False, **SMALL)
    b = ref.generate("a tree", progress=False, **SMALL)
    assert np.array_equal(a.frames, b.frames)


def test_sharded_dit_with_index_loads(tiny_official, tmp_path):
    import shutil

    from openwan import load_pipeline

    copy = tmp_path / "sharded"
    shutil.copytree(tiny_official, copy)
    sd = read_state_dict(copy / OFFICIAL_DIT)
    (copy / OFFICIAL_DIT).unlink()
    written = write_safetensors(sd, copy / OFFICIAL_DIT, max_shard_bytes=200_000)
    assert len(written) > 2 and written[-1].name.endswith(".index.json")
    pipe = load_pipeline(copy, device="cpu")
    _assert_same_state_dict(sd, pipe.dit.state_dict())


def test_custom_vae_latent_statistics_survive_official_layout_and_conversion(tmp_path):
    """A VAE trained here has its own latent mean/std: the official layout keeps them in vae_config.json
    (the release has none), the loader uses them, and conversion to diffusers and back keeps them."""
    import dataclasses

    from openwan.checkpoint.convert import convert_checkpoint
    from openwan.checkpoint.layout import OFFICIAL_VAE_CONFIG, find_checkpoint
    from openwan.checkpoint.loader import load_vae
    from openwan.checkpoint.random_init import TINY_VAE, write_random_checkpoint

    stats = dataclasses.replace(TINY_VAE, latents_mean=tuple(0.1 * i for i in range(16)),
                                latents_std=tuple(1.0 + 0.05 * i for i in range(16)))
    official = write_random_checkpoint(tmp_path / "off", layout="diffusers", vae_config=stats)
    back = convert_checkpoint(official, tmp_path / "official", to="official")
    assert (back / OFFICIAL_VAE_CONFIG).is_file()
    files = find_checkpoint(back)
    vae = load_vae(files.vae, config_path=files.vae_config)
    assert vae.config.latents_mean == stats.latents_mean and vae.config.latents_std == stats.latents_std
    again = convert_checkpoint(back, tmp_path / "diffusers", to="diffusers")
    f2 = find_checkpoint(again)
    assert load_vae(f2.vae, config_path=f2.vae_config).config.latents_std == stats.latents_std
    # A VAE with Wan's statistics writes no extra file: official folders stay as released.
    plain = convert_checkpoint(write_random_checkpoint(tmp_path / "p", layout="official"), tmp_path / "p2",
                               to="official")
    assert not (plain / OFFICIAL_VAE_CONFIG).exists()
