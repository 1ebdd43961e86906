"""Building each model from checkpoint files: detect key naming, map to our native (official) keys,
construct on the meta device and assign the loaded tensors (no second copy of the weights)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..configs import DiTConfig, VAEConfig
from ..errors import CheckpointError
from .io import StateDict, load_into, read_state_dict
from .layout import COMFY_PREFIX, check_slot, identify_state_dict, read_json

log = logging.getLogger(__name__)


def strip_prefix(sd: StateDict, prefix: str = COMFY_PREFIX) -> StateDict:
    """Drop a ComfyUI-style key prefix; keys outside the prefix (e.g. bundled VAE/text encoder) are dropped too."""
    if not any(k.startswith(prefix) for k in sd):
        return sd
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _materialize_buffers(module: torch.nn.Module, device: torch.device | str) -> None:
    """Meta-device construction leaves non-persistent buffers (never in a checkpoint) without data;
    modules that own such buffers rebuild them through ``reset_buffers``."""
    for m in module.modules():
        if any(b.is_meta for b in m.buffers(recurse=False)):
            if not hasattr(m, "reset_buffers"):
                raise RuntimeError(f"{type(m).__name__} has meta buffers after loading and no reset_buffers()")
            m.reset_buffers(device)


def dit_config_from_file(path: Path, sd: StateDict | None = None) -> DiTConfig:
    """DiT config from an official (WanModel) or diffusers (WanTransformer3DModel) config.json."""
    from .keymap_dit import dit_config_from_diffusers

    d = read_json(path)
    if d.get("_class_name") == "WanTransformer3DModel" or "num_attention_heads" in d:
        return dit_config_from_diffusers(d)
    if "dim" not in d:
        raise CheckpointError(f"{path} is not a Wan DiT config (no 'dim' or 'num_attention_heads')")
    return DiTConfig.from_dict(d)


def load_dit(path: Path, *, config_path: Path | None = None, device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None, expected_layout: str = "") -> "WanDiT":  # noqa: F821
    from ..models.dit import WanDiT
    from .keymap_dit import dit_config_from_state_dict, dit_diffusers_to_official

    sd = strip_prefix(read_state_dict(path))
    kind = identify_state_dict(sd.keys())
    check_slot(kind, "dit", path, expected_layout)
    if kind == "dit-diffusers":
        sd = dit_diffusers_to_official(sd)
    config = dit_config_from_file(config_path) if config_path else dit_config_from_state_dict(sd)
    with torch.device("meta"):
        model = WanDiT(config)
    load_into(model, sd, source=str(path), expected_layout=expected_layout, dtype=dtype)
    _materialize_buffers(model, "cpu")
    return model.to(device).eval().requires_grad_(False)


def vae_config_from_file(path: Path) -> VAEConfig:
    from .keymap_vae import vae_config_from_diffusers

    return vae_config_from_diffusers(read_json(path))


def load_vae(path: Path, *, config_path: Path | None = None, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, expected_layout: str = "") -> "WanVAE":  # noqa: F821
    from ..models.vae import WanVAE
    from .keymap_vae import vae_config_from_state_dict, vae_diffusers_to_official

    sd = read_state_dict(path)
    kind = identify_state_dict(sd.keys())
    check_slot(kind, "vae", path, expected_layout)
    if kind == "vae-diffusers":
        sd = vae_diffusers_to_official(sd)
    config = vae_config_from_file(config_path) if config_path else vae_config_from_state_dict(sd)
    with torch.device("meta"):
        model = WanVAE(config)
    load_into(model, sd, source=str(path), expected_layout=expected_layout, dtype=dtype)
    _materialize_buffers(model, "cpu")
    return model.to(device).eval().requires_grad_(False)


def load_text_encoder(path: Path, tokenizer: Path | None, *, config_path: Path | None = None,
                      device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                      text_len: int = 512, expected_layout: str = "") -> "WanTextEncoder":  # noqa: F821
    """umT5 encoder from an official ``.pth`` (official keys) or a transformers/diffusers folder's weights."""
    from transformers import UMT5Config

    from ..models.text_encoder import (WanTextEncoder, build_umt5_encoder, load_tokenizer,
                                       umt5_config_from_official_state_dict)
    from .keymap_t5 import t5_official_to_transformers

    if tokenizer is None:
        raise CheckpointError(f"no tokenizer folder for the text encoder {path}\nexpected {expected_layout}")
    sd = read_state_dict(path)
    kind = identify_state_dict(sd.keys())
    check_slot(kind, "t5", path, expected_layout)
    if kind == "t5-official":
        config = umt5_config_from_official_state_dict(sd)
        sd = t5_official_to_transformers(sd)
    else:
        if config_path is None:
            raise CheckpointError(f"{path} holds transformers-style umT5 weights but no config.json is next to it")
        config = UMT5Config.from_dict(read_json(config_path))
    model = build_umt5_encoder(config, device="meta")
    # transformers ties encoder.embed_tokens to shared; a saved folder usually stores only shared.weight.
    if "shared.weight" in sd and "encoder.embed_tokens.weight" not in sd:
        sd["encoder.embed_tokens.weight"] = sd["shared.weight"]
    load_into(model, sd, source=str(path), expected_layout=expected_layout, dtype=dtype)
    _materialize_buffers(model, "cpu")
    # WanTextEncoder re-ties the embeddings, so the table is moved to the device once, not twice.
    encoder = WanTextEncoder(model, load_tokenizer(tokenizer), text_len=text_len)
    return encoder.to(device).eval().requires_grad_(False)
