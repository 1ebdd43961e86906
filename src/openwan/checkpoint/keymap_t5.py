"""Key names of the umT5 encoder: official ``T5Encoder`` (wan/modules/t5.py) <-> transformers
``UMT5EncoderModel``. Only names change; tensors pass through untouched (no copies)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..errors import CheckpointError

StateDict = dict[str, torch.Tensor]

# transformers keeps the token embedding twice: ``shared`` and the tied ``encoder.embed_tokens``.
OFFICIAL_EMBEDDING = "token_embedding.weight"
TRANSFORMERS_EMBEDDINGS = ("shared.weight", "encoder.embed_tokens.weight")

_TOP = {"norm.weight": "encoder.final_layer_norm.weight"}

# Per block N: official "blocks.N.<key>" <-> transformers "encoder.block.N.<key>".
_BLOCK = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the GELU-activated branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # the linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}

_TOP_INVERSE = {v: k for k, v in _TOP.items()}
_BLOCK_INVERSE = {v: k for k, v in _BLOCK.items()}
_OFFICIAL_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_TRANSFORMERS_BLOCK = re.compile(r"encoder\.block\.(\d+)\.(.+)")


def t5_official_to_transformers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename an official umT5 encoder state dict for ``UMT5EncoderModel``.

    The token embedding goes to both ``shared.weight`` and ``encoder.embed_tokens.weight`` (one tensor,
    two names) because ``UMT5EncoderModel.state_dict()`` lists both and a strict load needs both. Writing
    the result with safetensors needs one of the two dropped (it refuses shared tensors); transformers
    re-ties the other on load.
    """
    if OFFICIAL_EMBEDDING not in sd:
        raise CheckpointError(f"not an official umT5 encoder state dict: '{OFFICIAL_EMBEDDING}' is missing")
    out: StateDict = {name: sd[OFFICIAL_EMBEDDING] for name in TRANSFORMERS_EMBEDDINGS}
    for k, v in sd.items():
        if k != OFFICIAL_EMBEDDING:
            out[_rename(k, _TOP, _BLOCK, _OFFICIAL_BLOCK, "encoder.block.{}.{}", "an official")] = v
    return out


def t5_transformers_to_official(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename a ``UMT5EncoderModel`` state dict to the official layout; exact inverse of the above.

    Either embedding name may be stored (saved checkpoints often keep only one); ``shared.weight`` wins
    when both are, as it does when transformers ties them.
    """
    embedding = next((sd[k] for k in TRANSFORMERS_EMBEDDINGS if k in sd), None)
    if embedding is None:
        raise CheckpointError(
            f"not a transformers umT5 encoder state dict: neither of {', '.join(TRANSFORMERS_EMBEDDINGS)} is present"
        )
    out: StateDict = {OFFICIAL_EMBEDDING: embedding}
    for k, v in sd.items():
        if k not in TRANSFORMERS_EMBEDDINGS:
            out[_rename(k, _TOP_INVERSE, _BLOCK_INVERSE, _TRANSFORMERS_BLOCK, "blocks.{}.{}", "a transformers")] = v
    return out


def _rename(key: str, top: dict[str, str], block: dict[str, str], block_re: re.Pattern, block_fmt: str,
            layout: str) -> str:
    if key in top:
        return top[key]
    m = block_re.fullmatch(key)
    if m and m.group(2) in block:
        return block_fmt.format(m.group(1), block[m.group(2)])
    # Unknown keys are an error, not dropped: an ignored tensor would mean a silently wrong model.
    raise CheckpointError(f"unexpected key '{key}' in {layout} umT5 encoder state dict")
