"""Writing checkpoints in the official or diffusers layout, and converting between the two.

Conversion renames keys and rewrites configs; tensors are copied unchanged (same dtype, same bits),
so official -> diffusers -> official is lossless.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal

from ..configs import LATENTS_MEAN, LATENTS_STD, DiTConfig, VAEConfig, variant_for
from ..errors import CheckpointError, InputError
from .io import StateDict, write_pth, write_safetensors, write_text_atomic
from .layout import (
    OFFICIAL_DIT,
    OFFICIAL_T5,
    OFFICIAL_TOKENIZER,
    OFFICIAL_VAE,
    OFFICIAL_VAE_CONFIG,
    CheckpointFiles,
    find_checkpoint,
)
from .loader import dit_config_from_file, read_official_state_dict, vae_config_from_file

MAX_SHARD_BYTES = 5 * 1024**3
DIFFUSERS_VERSION = "0.33.0"
# Fields of the official config.json (Wan-Video release), in the order they appear there.
OFFICIAL_CONFIG_FIELDS = ("dim", "eps", "ffn_dim", "freq_dim", "in_dim", "model_type", "num_heads",
                          "num_layers", "out_dim", "text_len")


def official_dit_config(cfg: DiTConfig) -> dict:
    """The official config.json fields, plus any other WanModel argument that differs from the release
    (e.g. text_dim of a small custom model), so the file alone rebuilds the model."""
    d, default = cfg.to_dict(), DiTConfig().to_dict()
    extra = {k: v for k, v in d.items() if k not in OFFICIAL_CONFIG_FIELDS and v != default[k]}
    return {"_class_name": "WanModel", "_diffusers_version": "0.30.0",
            **{k: d[k] for k in OFFICIAL_CONFIG_FIELDS}, **extra}


def _dump(obj: dict) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _copy_tokenizer(src: Path | None, dst: Path) -> None:
    if src is None or not Path(src).is_dir():
        raise CheckpointError(f"tokenizer folder not found: {src}")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def save_official(dst: str | os.PathLike, *, dit: StateDict, dit_config: DiTConfig, vae: StateDict,
                  t5: StateDict, tokenizer: Path, vae_config: VAEConfig | None = None) -> Path:
    """Write an official-layout directory from official-key state dicts (``t5`` in official keys).
    A ``vae_config`` whose latent mean/std differ from Wan-VAE's (a VAE trained here) goes to vae_config.json:
    the weights alone cannot say how to normalise its latents."""
    from .keymap_vae import vae_config_to_diffusers

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    write_text_atomic(dst / "config.json", _dump(official_dit_config(dit_config)))
    if vae_config is not None and (tuple(vae_config.latents_mean), tuple(vae_config.latents_std)) != (
            LATENTS_MEAN, LATENTS_STD):
        write_text_atomic(dst / OFFICIAL_VAE_CONFIG, _dump(vae_config_to_diffusers(vae_config)))
    write_safetensors(dit, dst / OFFICIAL_DIT, max_shard_bytes=MAX_SHARD_BYTES)
    write_pth(vae, dst / OFFICIAL_VAE)
    write_pth(t5, dst / OFFICIAL_T5)
    _copy_tokenizer(tokenizer, dst / OFFICIAL_TOKENIZER)
    return dst


def save_diffusers(dst: str | os.PathLike, *, dit: StateDict, dit_config: DiTConfig, vae: StateDict,
                   vae_config: VAEConfig, t5: StateDict, tokenizer: Path, shift: float | None = None) -> Path:
    """Write a diffusers-layout directory (WanPipeline) from official-key state dicts."""
    from ..models.text_encoder import umt5_config_from_official_state_dict
    from .keymap_dit import dit_config_to_diffusers, dit_official_to_diffusers
    from .keymap_t5 import t5_official_to_transformers
    from .keymap_vae import vae_config_to_diffusers, vae_official_to_diffusers

    dst = Path(dst)
    variant = variant_for(dit_config)
    shift = shift if shift is not None else (variant.sample.shift if variant else 5.0)
    index = {
        "_class_name": "WanPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "UniPCMultistepScheduler"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "WanTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLWan"],
    }
    scheduler = {
        "_class_name": "UniPCMultistepScheduler", "_diffusers_version": DIFFUSERS_VERSION,
        "num_train_timesteps": 1000, "prediction_type": "flow_prediction", "use_flow_sigmas": True,
        "flow_shift": shift, "solver_order": 2, "solver_type": "bh2", "predict_x0": True,
        "lower_order_final": True, "final_sigmas_type": "zero", "timestep_spacing": "linspace",
        "thresholding": False, "sample_max_value": 1.0, "disable_corrector": [], "beta_schedule": "linear",
        "beta_start": 0.0001, "beta_end": 0.02,
    }
    for sub in ("transformer", "vae", "text_encoder", "scheduler"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    write_text_atomic(dst / "model_index.json", _dump(index))
    write_text_atomic(dst / "scheduler" / "scheduler_config.json", _dump(scheduler))
    write_text_atomic(dst / "transformer" / "config.json",
                      _dump({"_class_name": "WanTransformer3DModel", "_diffusers_version": DIFFUSERS_VERSION,
                             **dit_config_to_diffusers(dit_config)}))
    write_safetensors(dit_official_to_diffusers(dit), dst / "transformer" / "diffusion_pytorch_model.safetensors",
                      max_shard_bytes=MAX_SHARD_BYTES)
    write_text_atomic(dst / "vae" / "config.json",
                      _dump({"_class_name": "AutoencoderKLWan", "_diffusers_version": DIFFUSERS_VERSION,
                             **vae_config_to_diffusers(vae_config)}))
    write_safetensors(vae_official_to_diffusers(vae), dst / "vae" / "diffusion_pytorch_model.safetensors")
    t5_config = umt5_config_from_official_state_dict(t5)
    t5_config.architectures = ["UMT5EncoderModel"]
    t5_config.dtype = str(next(iter(t5.values())).dtype).removeprefix("torch.")
    write_text_atomic(dst / "text_encoder" / "config.json", t5_config.to_json_string())
    t5_hf = t5_official_to_transformers(t5)
    t5_hf.pop("encoder.embed_tokens.weight")  # tied to shared.weight; safetensors refuses shared storage
    write_safetensors(t5_hf, dst / "text_encoder" / "model.safetensors", max_shard_bytes=MAX_SHARD_BYTES)
    _copy_tokenizer(tokenizer, dst / "tokenizer")
    return dst


def read_official_components(files: CheckpointFiles) -> dict:
    """Every component of a checkpoint as official-key state dicts plus the DiT/VAE configs."""
    from .keymap_dit import dit_config_from_state_dict
    from .keymap_vae import vae_config_from_state_dict

    if files.vae is None or files.text_encoder is None or files.tokenizer is None:
        raise CheckpointError(
            f"{files.root} is incomplete ({'; '.join(files.notes)}): converting needs the DiT, VAE, text encoder "
            f"and tokenizer\nexpected {files.expected_layout}"
        )
    layout = files.expected_layout
    dit = read_official_state_dict(files.dit, "dit", layout)
    dit_config = dit_config_from_file(files.dit_config) if files.dit_config else dit_config_from_state_dict(dit)
    vae = read_official_state_dict(files.vae, "vae", layout)
    vae_config = vae_config_from_file(files.vae_config) if files.vae_config else vae_config_from_state_dict(vae)
    t5 = read_official_state_dict(files.text_encoder, "t5", layout)
    return {"dit": dit, "dit_config": dit_config, "vae": vae, "vae_config": vae_config, "t5": t5,
            "tokenizer": files.tokenizer}


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike,
                       to: Literal["official", "diffusers"]) -> Path:
    """Convert the checkpoint at ``src`` (any layout) into ``dst`` in the ``to`` layout."""
    if to not in ("official", "diffusers"):
        raise InputError(f"--to must be 'official' or 'diffusers', got {to!r}")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise InputError(f"destination {dst} exists and is not empty; choose a new folder")
    if Path(src).resolve() == dst.resolve():
        raise InputError("source and destination are the same folder")
    parts = read_official_components(find_checkpoint(src))
    if to == "official":
        return save_official(dst, **parts)
    return save_diffusers(dst, **parts)
