"""Wan-VAE checkpoint keys and configs: official ``Wan2.1_VAE.pth`` <-> diffusers ``AutoencoderKLWan``.

Only names differ (every tensor has the same shape in both layouts):

    conv1 / conv2                      <-> quant_conv / post_quant_conv
    {encoder,decoder}.conv1            <-> {encoder,decoder}.conv_in
    *.head.0.gamma / *.head.2          <-> *.norm_out.gamma / *.conv_out
    *.middle.0 / .2 (residual blocks)  <-> *.mid_block.resnets.0 / .1
    *.middle.1 (attention)             <-> *.mid_block.attentions.0
    encoder.downsamples.N              <-> encoder.down_blocks.N
    decoder.upsamples.N                <-> decoder.up_blocks.B.resnets.R  or  decoder.up_blocks.B.upsamplers.0
    residual.{0,2,3,6}, shortcut       <-> norm1, conv1, norm2, conv2, conv_shortcut  (inside residual blocks)

The decoder's flat official list is regrouped level by level: each level's residual blocks, then its
upsampler, which closes the level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..configs import LATENTS_MEAN, LATENTS_STD, VAEConfig
from ..errors import CheckpointError
from .io import StateDict

_TOP = {"conv1.": "quant_conv.", "conv2.": "post_quant_conv."}
_HEAD = {"head.0.": "norm_out.", "head.2.": "conv_out."}
_MIDDLE = {"middle.0.": "mid_block.resnets.0.", "middle.1.": "mid_block.attentions.0.",
           "middle.2.": "mid_block.resnets.1."}
_RESIDUAL = {"residual.0.": "norm1.", "residual.2.": "conv1.", "residual.3.": "norm2.", "residual.6.": "conv2.",
             "shortcut.": "conv_shortcut."}


def _invert(d: dict[str, str]) -> dict[str, str]:
    return {v: k for k, v in d.items()}


_TOP_INV, _HEAD_INV, _MIDDLE_INV, _RESIDUAL_INV = map(_invert, (_TOP, _HEAD, _MIDDLE, _RESIDUAL))


def _rename_prefix(name: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if name.startswith(old):
            return new + name[len(old):]
    return name


# ---- official -> diffusers ---------------------------------------------------------------------------------

def vae_official_to_diffusers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Official ``Wan2.1_VAE.pth`` keys -> ``AutoencoderKLWan`` keys (tensors are shared, not copied)."""
    up_slots = _official_up_slots(sd)
    return {_official_key_to_diffusers(key, up_slots): value for key, value in sd.items()}


def _official_key_to_diffusers(key: str, up_slots: dict[int, str]) -> str:
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        return _rename_prefix(key, _TOP)
    if rest.startswith(("conv1.", "head.")):
        return f"{part}.{_rename_prefix(rest, {'conv1.': 'conv_in.', **_HEAD})}"
    m = re.match(r"(middle|downsamples|upsamples)\.(\d+)\.(.*)", rest)
    if m is None:
        raise CheckpointError(f"unexpected Wan-VAE key {key!r}")
    group, idx, inner = m.group(1), int(m.group(2)), _rename_prefix(m.group(3), _RESIDUAL)
    if group == "middle":
        if f"middle.{idx}." not in _MIDDLE:
            raise CheckpointError(f"unexpected Wan-VAE key {key!r}")
        return f"{part}.{_MIDDLE[f'middle.{idx}.']}{inner}"
    if group == "downsamples":
        return f"{part}.down_blocks.{idx}.{inner}"
    return f"{part}.{up_slots[idx]}.{inner}"


def _official_up_slots(sd: Mapping[str, torch.Tensor]) -> dict[int, str]:
    """decoder.upsamples index -> ``up_blocks.B.resnets.R`` / ``up_blocks.B.upsamplers.0``."""
    kinds: dict[int, str] = {}
    for key in sd:
        m = re.match(r"decoder\.upsamples\.(\d+)\.([a-z_]+)", key)
        if m:
            kinds[int(m.group(1))] = m.group(2)
    slots, block, resnet = {}, 0, 0
    for idx in sorted(kinds):
        if kinds[idx] in ("residual", "shortcut"):
            slots[idx] = f"up_blocks.{block}.resnets.{resnet}"
            resnet += 1
        elif kinds[idx] in ("resample", "time_conv"):
            slots[idx] = f"up_blocks.{block}.upsamplers.0"  # closes the level
            block, resnet = block + 1, 0
        else:
            raise CheckpointError(
                f"decoder.upsamples.{idx} is an attention block; diffusers' AutoencoderKLWan has no decoder "
                "attention outside the middle block, so this VAE cannot be converted"
            )
    return slots


# ---- diffusers -> official ---------------------------------------------------------------------------------

def vae_diffusers_to_official(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """``AutoencoderKLWan`` keys -> official keys; the exact inverse of ``vae_official_to_diffusers``."""
    up_index = _diffusers_up_index(sd)
    return {_diffusers_key_to_official(key, up_index): value for key, value in sd.items()}


def _diffusers_key_to_official(key: str, up_index: dict[str, int]) -> str:
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        return _rename_prefix(key, _TOP_INV)
    if rest.startswith(("conv_in.", "norm_out.", "conv_out.")):
        return f"{part}.{_rename_prefix(rest, {'conv_in.': 'conv1.', **_HEAD_INV})}"
    m = re.match(r"(mid_block\.(?:resnets\.\d+|attentions\.0)|down_blocks\.\d+"
                 r"|up_blocks\.\d+\.(?:resnets\.\d+|upsamplers\.0))\.(.*)", rest)
    if m is None:
        raise CheckpointError(f"unexpected AutoencoderKLWan key {key!r}")
    slot, inner = m.group(1), _rename_prefix(m.group(2), _RESIDUAL_INV)
    if slot.startswith("mid_block."):
        return f"{part}.{_MIDDLE_INV[slot + '.']}{inner}"
    if slot.startswith("down_blocks."):
        return f"{part}.downsamples.{slot.split('.')[1]}.{inner}"
    return f"{part}.upsamples.{up_index[slot]}.{inner}"


def _diffusers_up_index(sd: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``up_blocks.B.resnets.R`` / ``up_blocks.B.upsamplers.0`` -> decoder.upsamples index."""
    slots: set[tuple[int, int, int]] = set()  # (block, 1 for the upsampler else 0, resnet): sorts in official order
    for key in sd:
        m = re.match(r"decoder\.up_blocks\.(\d+)\.(?:resnets\.(\d+)|upsamplers\.0)\.", key)
        if m:
            is_up = m.group(2) is None
            slots.add((int(m.group(1)), int(is_up), 0 if is_up else int(m.group(2))))
    return {
        f"up_blocks.{block}." + ("upsamplers.0" if is_up else f"resnets.{resnet}"): i
        for i, (block, is_up, resnet) in enumerate(sorted(slots))
    }


# ---- configs -------------------------------------------------------------------------------------------------

def vae_config_to_diffusers(cfg: VAEConfig) -> dict[str, Any]:
    """``AutoencoderKLWan`` config.json fields for ``cfg``."""
    return {
        "_class_name": "AutoencoderKLWan",
        "base_dim": cfg.dim,
        "z_dim": cfg.z_dim,
        "dim_mult": list(cfg.dim_mult),
        "num_res_blocks": cfg.num_res_blocks,
        "attn_scales": list(cfg.attn_scales),
        "temperal_downsample": list(cfg.temporal_downsample),  # sic: diffusers' spelling
        "dropout": cfg.dropout,
        "latents_mean": list(cfg.latents_mean),
        "latents_std": list(cfg.latents_std),
    }


def vae_config_from_diffusers(d: Mapping[str, Any]) -> VAEConfig:
    """VAEConfig from an ``AutoencoderKLWan`` config.json; refuses the Wan 2.2 variants this model cannot run."""
    default = VAEConfig()
    base_dim = d.get("base_dim", default.dim)
    unsupported = {
        "is_residual": (d.get("is_residual", False), False),
        "patch_size": (d.get("patch_size"), None),
        "decoder_base_dim": (d.get("decoder_base_dim") or base_dim, base_dim),
        "in_channels": (d.get("in_channels", 3), 3),
        "out_channels": (d.get("out_channels", 3), 3),
    }
    bad = [f"{k}={got!r}" for k, (got, want) in unsupported.items() if got != want]
    if bad:
        raise CheckpointError(f"unsupported AutoencoderKLWan config ({', '.join(bad)}): "
                              "only the Wan 2.1 VAE is supported")
    z_dim = d.get("z_dim", default.z_dim)
    mean, std = _default_stats(z_dim)
    return VAEConfig(
        dim=base_dim,
        z_dim=z_dim,
        dim_mult=tuple(d.get("dim_mult", default.dim_mult)),
        num_res_blocks=d.get("num_res_blocks", default.num_res_blocks),
        attn_scales=tuple(d.get("attn_scales", default.attn_scales)),
        temporal_downsample=tuple(d.get("temperal_downsample", default.temporal_downsample)),
        dropout=d.get("dropout", default.dropout),
        latents_mean=tuple(d.get("latents_mean") or mean),
        latents_std=tuple(d.get("latents_std") or std),
    )


def vae_config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> VAEConfig:
    """Infer the VAEConfig from the tensor shapes of an official (or diffusers) Wan-VAE state dict."""
    if "quant_conv.weight" in sd:
        sd = vae_diffusers_to_official(sd)
    for key in ("encoder.conv1.weight", "conv2.weight"):
        if key not in sd:
            raise CheckpointError(f"not a Wan-VAE state dict: {key!r} is missing")
    dim = sd["encoder.conv1.weight"].shape[0]
    z_dim = sd["conv2.weight"].shape[0]

    # Walk encoder.downsamples: residual blocks and attention fill a level, a resample closes it.
    kinds: dict[int, str] = {}
    for key in sd:
        m = re.match(r"encoder\.downsamples\.(\d+)\.([a-z_]+)", key)
        if m:
            idx, name = int(m.group(1)), m.group(2)
            # a downsample3d has both resample.* and time_conv.*: remember the time_conv
            if kinds.get(idx) != "time_conv":
                kinds[idx] = name
    levels: list[dict[str, Any]] = [{"res": [], "attn": False}]
    temporal: list[bool] = []
    for idx in sorted(kinds):
        kind = kinds[idx]
        if kind in ("residual", "shortcut"):
            levels[-1]["res"].append(sd[f"encoder.downsamples.{idx}.residual.2.weight"].shape[0])
        elif kind in ("norm", "to_qkv", "proj"):
            levels[-1]["attn"] = True
        else:  # resample / time_conv
            temporal.append(kind == "time_conv")
            levels.append({"res": [], "attn": False})
    num_res_blocks = len(levels[0]["res"])
    if num_res_blocks == 0 or any(len(lv["res"]) != num_res_blocks for lv in levels):
        raise CheckpointError("Wan-VAE state dict has levels with different numbers of residual blocks")
    mean, std = _default_stats(z_dim)
    return VAEConfig(
        dim=dim,
        z_dim=z_dim,
        dim_mult=tuple(lv["res"][-1] // dim for lv in levels),
        num_res_blocks=num_res_blocks,
        attn_scales=tuple(1.0 / 2**i for i, lv in enumerate(levels) if lv["attn"]),
        temporal_downsample=tuple(temporal),
        latents_mean=mean,
        latents_std=std,
    )


def _default_stats(z_dim: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The released latent statistics for the 16-channel VAE; identity normalisation otherwise."""
    if z_dim == len(LATENTS_MEAN):
        return LATENTS_MEAN, LATENTS_STD
    return (0.0,) * z_dim, (1.0,) * z_dim
