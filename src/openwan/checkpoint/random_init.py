"""Tiny random-weight Wan checkpoints: the real architecture and file layouts at toy size.

They make videos of structured noise, not content. They exist so that an installation, a pipeline, a
conversion or a benchmark can be exercised end to end on a machine without the released weights.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..configs import DiTConfig, VAEConfig
from .convert import save_diffusers, save_official

# head_dim 128 as released, so a bare DiT file implies its head count
TINY_DIT = DiTConfig(dim=256, ffn_dim=512, num_heads=2, num_layers=2, text_dim=64, freq_dim=256)
TINY_VAE = VAEConfig(dim=16, z_dim=16, dim_mult=(1, 2, 2, 2), num_res_blocks=1)
TINY_T5 = dict(d_model=64, d_ff=128, num_heads=2, d_kv=32, num_layers=2)


@torch.no_grad()
def randomize_(module: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Fill every parameter with seeded noise (norm scales around 1), unlike the official init, whose
    zero-initialised head and projections would hide bugs and make every output the same."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        leaf = name.rsplit(".", 1)[-1]
        is_scale = "norm" in name and leaf in ("weight", "gamma") or leaf == "gamma"
        p.copy_((1.0 + 0.1 * noise) if is_scale else std * noise)
    return module


def build_random_models(dit_config: DiTConfig = TINY_DIT, vae_config: VAEConfig = TINY_VAE,
                        t5: dict | None = None, vocab_size: int = 512, seed: int = 0, t5_std: float = 0.2):
    """Random-weight (DiT, VAE, umT5 official state dict) at the given shapes."""
    from transformers import UMT5Config

    from ..models.dit import WanDiT
    from ..models.text_encoder import build_umt5_encoder
    from ..models.vae import WanVAE
    from .keymap_t5 import t5_transformers_to_official

    dit = randomize_(WanDiT(replace(dit_config, text_dim=(t5 or TINY_T5)["d_model"])), seed)
    vae = randomize_(WanVAE(vae_config), seed + 1)
    t5_cfg = UMT5Config(vocab_size=vocab_size, **(t5 or TINY_T5), feed_forward_proj="gated-gelu",
                        is_encoder_decoder=False, tie_word_embeddings=False, relative_attention_num_buckets=32,
                        relative_attention_max_distance=128, layer_norm_epsilon=1e-6, dropout_rate=0.0)
    t5_model = build_umt5_encoder(t5_cfg, device="cpu")
    randomize_(t5_model, seed + 2, std=t5_std)
    return dit, vae, t5_transformers_to_official(t5_model.state_dict())


def write_random_checkpoint(dst: str | os.PathLike, *, layout: Literal["official", "diffusers"] = "official",
                            seed: int = 0, dit_config: DiTConfig = TINY_DIT, vae_config: VAEConfig = TINY_VAE,
                            t5: dict | None = None) -> Path:
    """Write a random-weight checkpoint with a small bilingual tokenizer into ``dst``."""
    from .tiny_tokenizer import build_tiny_tokenizer

    dst = Path(dst)
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = build_tiny_tokenizer(Path(tmp) / "tokenizer")
        from transformers import AutoTokenizer

        vocab = len(AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True))
        dit, vae, t5_sd = build_random_models(dit_config, vae_config, t5, vocab_size=vocab, seed=seed)
        common = dict(dit=dit.state_dict(), dit_config=dit.config, vae=vae.state_dict(), t5=t5_sd, tokenizer=tok_dir)
        if layout == "official":
            return save_official(dst, **common)
        return save_diffusers(dst, vae_config=vae.config, **common)
