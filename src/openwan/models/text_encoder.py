"""umT5-XXL text encoder of Wan 2.1: prompt cleaning, tokenization and transformers' ``UMT5EncoderModel``.

The encoder itself is transformers' implementation; what is Wan-specific is the cleaning of prompts and
the output convention: each prompt's states are kept up to its true token count (``</s>`` included)
and the rest of the ``text_len`` rows are exact zeros, as in the official ``T5EncoderModel`` +
``WanModel`` and diffusers' ``WanPipeline``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping
from pathlib import Path

import ftfy
import regex
import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, UMT5Config, UMT5EncoderModel

from ..configs import TEXT_LEN
from ..errors import CheckpointError, InputError

# Constants of umT5 that are not visible in tensor shapes.
_MAX_DISTANCE = 128  # relative positions beyond this share the last bucket
_EPS = 1e-6


def clean_prompt(text: str) -> str:
    """Official prompt cleaning: fix mojibake, unescape HTML twice, collapse whitespace."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    # The `regex` module, as upstream: its \s matches Unicode White_Space, which differs from `re` on a few
    # control characters.
    return regex.sub(r"\s+", " ", text).strip()


class WanTextEncoder(nn.Module):
    """Prompts -> umT5 states ``[B, text_len, d_model]``, zero past each prompt's length.

    Build it after the weights are in ``model``: it re-ties the input embedding to ``shared`` (a
    load by assignment unties them), so moving the module moves one copy of the 1 B-entry table.
    """

    def __init__(self, model: UMT5EncoderModel, tokenizer: PreTrainedTokenizerBase, text_len: int = TEXT_LEN):
        super().__init__()
        if text_len < 1:
            raise InputError(f"text_len must be positive, got {text_len}")
        model.set_input_embeddings(model.get_input_embeddings())
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = text_len

    @property
    def device(self) -> torch.device:
        return self.model.shared.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shared.weight.dtype

    @torch.no_grad()
    def encode(self, prompts: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``prompts``; returns (embeddings ``[B, text_len, d_model]`` in the model dtype, lengths ``[B]``
        int64)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise InputError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        tokens = self.tokenizer(
            [clean_prompt(p) for p in prompts],
            padding="max_length",
            max_length=self.text_len,
            truncation=True,
            add_special_tokens=True,  # appends </s>, which the official encoder sees and keeps
            return_attention_mask=True,
            padding_side="right",  # the trimming below assumes the real tokens come first
            return_tensors="pt",
        )
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        lengths = mask.gt(0).sum(dim=1).long()
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        # Rows past the length are exact zeros (not whatever padded queries produced): the DiT sees them.
        keep = torch.arange(self.text_len, device=self.device)[None, :] < lengths[:, None]
        states = states.to(self.dtype).masked_fill(~keep[..., None], 0)
        return states, lengths


def umt5_xxl_config() -> UMT5Config:
    """The umT5-XXL encoder Wan 2.1 ships (5.68 B parameters)."""
    return _umt5_config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_heads=64, num_layers=24,
                        num_buckets=32)


def umt5_config_from_official_state_dict(sd: Mapping[str, torch.Tensor]) -> UMT5Config:
    """Encoder shape read from an official ``T5Encoder`` state dict (``models_t5_umt5-xxl-enc-bf16.pth``)."""
    needed = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight",
              "blocks.0.pos_embedding.embedding.weight")
    missing = [k for k in needed if k not in sd]
    if missing:
        hint = " (a shared position table: plain T5, not umT5)" if "pos_embedding.embedding.weight" in sd else ""
        raise CheckpointError(f"not an official umT5 encoder state dict{hint}: missing {', '.join(missing)}")
    vocab_size, d_model = sd["token_embedding.weight"].shape
    inner = sd["blocks.0.attn.q.weight"].shape[0]
    d_ff = sd["blocks.0.ffn.fc1.weight"].shape[0]
    num_buckets, num_heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
    if inner % num_heads:
        raise CheckpointError(f"umT5 attention width {inner} is not a multiple of its {num_heads} heads")
    num_layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    return _umt5_config(vocab_size=vocab_size, d_model=d_model, d_kv=inner // num_heads, d_ff=d_ff,
                        num_heads=num_heads, num_layers=num_layers, num_buckets=num_buckets)


def _umt5_config(*, vocab_size: int, d_model: int, d_kv: int, d_ff: int, num_heads: int, num_layers: int,
                 num_buckets: int) -> UMT5Config:
    # UMT5Attention gives every layer its own bias table and does not scale q.k, as the official code.
    return UMT5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_heads=num_heads,
        num_layers=num_layers,
        relative_attention_num_buckets=num_buckets,
        relative_attention_max_distance=_MAX_DISTANCE,
        feed_forward_proj="gated-gelu",  # gelu_new = tanh GELU on wi_0, times wi_1
        layer_norm_epsilon=_EPS,
        dropout_rate=0.0,  # a frozen encoder
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def build_umt5_encoder(config: UMT5Config, device: str | torch.device = "meta") -> UMT5EncoderModel:
    """An encoder with that shape; on ``meta`` it costs nothing and the loader assigns the weights."""
    with torch.device(device):
        model = UMT5EncoderModel(config)
    return model.eval().requires_grad_(False)


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The umT5 tokenizer from a local folder (official ``google/umt5-xxl/`` or diffusers ``tokenizer/``)."""
    folder = Path(path)
    expected = "tokenizer.json or spiece.model, with tokenizer_config.json"
    if not folder.is_dir():
        raise CheckpointError(f"tokenizer folder not found: {folder} (expected a folder with {expected})")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # transformers raises several types for a missing or broken file
        raise CheckpointError(
            f"could not load a tokenizer from {folder}: expected {expected}; {type(e).__name__}: {e}"
        ) from e
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise CheckpointError(f"tokenizer in {folder} has no pad or eos token; expected the umT5 tokenizer")
    return tokenizer
