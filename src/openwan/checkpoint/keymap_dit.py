"""DiT state-dict keys and configs: official Wan 2.1 (``WanModel``) <-> diffusers (``WanTransformer3DModel``).

Tensors are identical in both layouts; only names differ. Renames work on whole dotted module
paths, so the two directions are exact inverses and an unknown key is an error, never passed through.
Also infers a ``DiTConfig`` from official tensor shapes for checkpoints that come without a config.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..configs import DiTConfig
from ..errors import CheckpointError

ROPE_MAX_SEQ_LEN = 1024  # positions per axis of the official RoPE tables

# Module paths outside the blocks (official -> diffusers). "patch_embedding" keeps its name.
_TOP = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
}

_ATTN = {
    "q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k",
    "k_img": "add_k_proj", "v_img": "add_v_proj", "norm_k_img": "norm_added_k",
}

# Module paths inside ``blocks.N`` (official -> diffusers). The affine pre-cross-attention norm is
# official norm3 but diffusers norm2 (the parameter-free norms own no tensors in either layout).
_BLOCK = {
    "modulation": "scale_shift_table",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    **{f"{ours}.{a}": f"{theirs}.{b}" for ours, theirs in (("self_attn", "attn1"), ("cross_attn", "attn2"))
       for a, b in _ATTN.items()},
}

_BLOCK_KEY = re.compile(r"^(blocks\.\d+\.)(.+)$")


def _rename(key: str, top: Mapping[str, str], block: Mapping[str, str], layout: str) -> str:
    m = _BLOCK_KEY.match(key)
    prefix, rest, table = (m.group(1), m.group(2), block) if m else ("", key, top)
    # No table entry is a dotted prefix of another, so at most one matches.
    for path in table:
        if rest == path or rest.startswith(path + "."):
            return prefix + table[path] + rest[len(path):]
    raise CheckpointError(f"unexpected key {key!r} for a {layout} Wan 2.1 DiT state dict")


def _convert(sd: Mapping[str, torch.Tensor], top: Mapping[str, str], block: Mapping[str, str],
             layout: str) -> dict[str, torch.Tensor]:
    return {_rename(k, top, block, layout): v for k, v in sd.items()}


def _inverse(table: Mapping[str, str]) -> dict[str, str]:
    return {v: k for k, v in table.items()}


def dit_official_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official ``WanModel`` keys to ``WanTransformer3DModel`` keys (tensors are shared, not copied)."""
    return _convert(sd, _TOP, _BLOCK, "official")


def dit_diffusers_to_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of ``dit_official_to_diffusers``."""
    return _convert(sd, _inverse(_TOP), _inverse(_BLOCK), "diffusers")


def dit_config_to_diffusers(cfg: DiTConfig) -> dict[str, Any]:
    """``WanTransformer3DModel`` constructor kwargs (its config.json fields) for ``cfg``."""
    if not cfg.qk_norm:
        raise CheckpointError("diffusers' WanTransformer3DModel always applies q/k RMSNorm; "
                              "a DiT with qk_norm=False has no diffusers equivalent")
    return {
        "patch_size": list(cfg.patch_size),
        "num_attention_heads": cfg.num_heads,
        "attention_head_dim": cfg.head_dim,
        "in_channels": cfg.in_dim,
        "out_channels": cfg.out_dim,
        "text_dim": cfg.text_dim,
        "freq_dim": cfg.freq_dim,
        "ffn_dim": cfg.ffn_dim,
        "num_layers": cfg.num_layers,
        "cross_attn_norm": cfg.cross_attn_norm,
        "qk_norm": "rms_norm_across_heads",
        "eps": cfg.eps,
        "image_dim": cfg.image_dim if cfg.has_image_input else None,
        "added_kv_proj_dim": cfg.dim if cfg.has_image_input else None,
        "rope_max_seq_len": ROPE_MAX_SEQ_LEN,
        "pos_embed_seq_len": 2 * cfg.image_tokens if cfg.model_type == "flf2v" else None,
    }


def dit_config_from_diffusers(d: Mapping[str, Any]) -> DiTConfig:
    """``DiTConfig`` from a diffusers ``transformer/config.json`` dict (absent fields take diffusers' defaults)."""
    heads = d.get("num_attention_heads", 40)
    dim = heads * d.get("attention_head_dim", 128)
    in_dim = d.get("in_channels", 16)
    pos_len = d.get("pos_embed_seq_len")
    image = d.get("added_kv_proj_dim") is not None
    if pos_len is not None and not image:
        raise CheckpointError("diffusers config has pos_embed_seq_len but no added_kv_proj_dim: not a Wan 2.1 DiT")
    if image and d.get("added_kv_proj_dim") != dim:
        raise CheckpointError(f"added_kv_proj_dim {d.get('added_kv_proj_dim')} differs from the model width {dim}; "
                              "Wan 2.1 image cross-attention projects the embedded image tokens at model width")
    if d.get("qk_norm", "rms_norm_across_heads") not in ("rms_norm_across_heads", None):
        raise CheckpointError(f"unsupported diffusers qk_norm {d.get('qk_norm')!r}")
    kw: dict[str, Any] = {}
    if image:
        kw["image_dim"] = d.get("image_dim") or 1280
    if pos_len is not None:
        kw["image_tokens"] = pos_len // 2
    return DiTConfig(
        model_type="flf2v" if pos_len is not None else "i2v" if image else "t2v",
        patch_size=tuple(d.get("patch_size", (1, 2, 2))),
        in_dim=in_dim,
        dim=dim,
        ffn_dim=d.get("ffn_dim", 13824),
        freq_dim=d.get("freq_dim", 256),
        text_dim=d.get("text_dim", 4096),
        out_dim=d.get("out_channels") or in_dim,
        num_heads=heads,
        num_layers=d.get("num_layers", 40),
        qk_norm=True,  # diffusers' Wan attention always has q/k RMSNorm
        cross_attn_norm=d.get("cross_attn_norm", True),
        eps=d.get("eps", 1e-6),
        **kw,
    )


def dit_config_from_state_dict(sd: Mapping[str, torch.Tensor], num_heads: int | None = None) -> DiTConfig:
    """Infer the ``DiTConfig`` of an official-key state dict from its tensor shapes.

    The head count is not visible in the shapes: pass ``num_heads``, or it is taken as dim // 128
    (the head size of every released model) when that divides.
    """
    if "img_emb.emb_pos" in sd:
        model_type = "flf2v"
    elif "blocks.0.cross_attn.k_img.weight" in sd:
        model_type = "i2v"
    else:
        model_type = "t2v"
    required = ["patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
                "blocks.0.ffn.0.weight", "head.head.weight"]
    if model_type != "t2v":
        required.append("img_emb.proj.0.weight")
    missing = [k for k in required if k not in sd]
    if missing:
        raise CheckpointError(f"not an official Wan 2.1 DiT state dict: missing {', '.join(missing)} "
                              "(diffusers-layout weights must be renamed with dit_diffusers_to_official first)")

    def shape(key: str) -> tuple[int, ...]:
        return tuple(sd[key].shape)

    dim, in_dim, *patch = shape("patch_embedding.weight")
    if num_heads is None:
        if dim % 128:
            raise CheckpointError(f"cannot infer the number of heads of a DiT of width {dim} (not a multiple of 128); "
                                  "provide the checkpoint's config.json or pass num_heads")
        num_heads = dim // 128
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"^blocks\.(\d+)\.", k))}
    if layers != set(range(len(layers))):
        raise CheckpointError(f"DiT state dict has non-contiguous block indices {sorted(layers)[:8]}…")
    kw: dict[str, Any] = {}
    if model_type != "t2v":
        kw["image_dim"] = shape("img_emb.proj.0.weight")[0]
    if model_type == "flf2v":
        kw["image_tokens"] = shape("img_emb.emb_pos")[1] // 2
    return DiTConfig(
        model_type=model_type,
        patch_size=tuple(patch),
        in_dim=in_dim,
        dim=dim,
        ffn_dim=shape("blocks.0.ffn.0.weight")[0],
        freq_dim=shape("time_embedding.0.weight")[1],
        text_dim=shape("text_embedding.0.weight")[1],
        out_dim=shape("head.head.weight")[0] // math.prod(patch),
        num_heads=num_heads,
        num_layers=len(layers),
        qk_norm="blocks.0.self_attn.norm_q.weight" in sd,
        cross_attn_norm="blocks.0.norm3.weight" in sd,
        **kw,
    )
