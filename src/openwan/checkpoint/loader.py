"""Building each model from checkpoint files: detect key naming, map to our native (official) keys,
construct on the meta device and assign the loaded tensors (no second copy of the weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..configs import DiTConfig, VAEConfig
from ..errors import CheckpointError
from .io import StateDict, load_into, read_state_dict
from .keymap_dit import dit_diffusers_to_official
from .keymap_t5 import t5_transformers_to_official
from .keymap_vae import vae_diffusers_to_official
from .layout import COMFY_PREFIX, check_slot, identify_state_dict, read_json


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


_TO_OFFICIAL_KEYS = {
    "dit-diffusers": dit_diffusers_to_official,
    "vae-diffusers": vae_diffusers_to_official,
    "t5-transformers": t5_transformers_to_official,
}


def read_official_state_dict(path: Path, slot: str, expected_layout: str = "") -> StateDict:
    """Read the weights for ``slot`` ('dit', 'vae' or 't5') from any naming convention and return them
    under our native (official) key names; a file holding another model is rejected by name."""
    sd = read_state_dict(path)
    if slot == "dit":
        sd = strip_prefix(sd)
    kind = identify_state_dict(sd.keys())
    check_slot(kind, slot, path, expected_layout)
    if kind in _TO_OFFICIAL_KEYS:
        sd = _TO_OFFICIAL_KEYS[kind](sd)
    return sd


def _assign(model: torch.nn.Module, sd: StateDict, path: Path, expected_layout: str,
            dtype: torch.dtype | None, device: torch.device | str) -> torch.nn.Module:
    load_into(model, sd, source=str(path), expected_layout=expected_layout, dtype=dtype)
    _materialize_buffers(model, "cpu")
    return model.to(device).eval().requires_grad_(False)


def load_dit(path: Path, *, config_path: Path | None = None, device: torch.device | str = "cpu",
             dtype: torch.dtype | None = None, expected_layout: str = "") -> WanDiT:  # noqa: F821
    from ..models.dit import WanDiT
    from .keymap_dit import dit_config_from_state_dict

    sd = read_official_state_dict(path, "dit", expected_layout)
    config = dit_config_from_file(config_path) if config_path else dit_config_from_state_dict(sd)
    with torch.device("meta"):
        model = WanDiT(config)
    return _assign(model, sd, path, expected_layout, dtype, device)


def vae_config_from_file(path: Path) -> VAEConfig:
    from .keymap_vae import vae_config_from_diffusers

    return vae_config_from_diffusers(read_json(path))


def load_vae(path: Path, *, config_path: Path | None = None, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, expected_layout: str = "") -> WanVAE:  # noqa: F821
    from ..models.vae import WanVAE
    from .keymap_vae import vae_config_from_state_dict

    sd = read_official_state_dict(path, "vae", expected_layout)
    config = vae_config_from_file(config_path) if config_path else vae_config_from_state_dict(sd)
    with torch.device("meta"):
        model = WanVAE(config)
    return _assign(model, sd, path, expected_layout, dtype, device)


def load_text_encoder(path: Path, tokenizer: Path | None, *, config_path: Path | None = None,
                      device: torch.device | str = "cpu", dtype: torch.dtype | None = None,
                      text_len: int = 512, expected_layout: str = "") -> WanTextEncoder:  # noqa: F821
    """umT5 encoder from an official ``.pth`` (official keys) or a transformers/diffusers folder's weights."""
    from transformers import UMT5Config

    from ..models.text_encoder import (
        WanTextEncoder,
        build_umt5_encoder,
        load_tokenizer,
        umt5_config_from_official_state_dict,
    )
    from .keymap_t5 import t5_official_to_transformers

    if tokenizer is None:
        raise CheckpointError(f"no tokenizer folder for the text encoder {path}\nexpected {expected_layout}")
    sd = read_official_state_dict(path, "t5", expected_layout)
    # A transformers folder's config.json is authoritative; an official .pth carries only tensors.
    config = (UMT5Config.from_dict(read_json(config_path)) if config_path
              else umt5_config_from_official_state_dict(sd))
    sd = t5_official_to_transformers(sd)
    model = build_umt5_encoder(config, device="meta")
    load_into(model, sd, source=str(path), expected_layout=expected_layout, dtype=dtype)
    _materialize_buffers(model, "cpu")
    # WanTextEncoder re-ties the embeddings, so the table is moved to the device once, not twice.
    encoder = WanTextEncoder(model, load_tokenizer(tokenizer), text_len=text_len)
    return encoder.to(device).eval().requires_grad_(False)
