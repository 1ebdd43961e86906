"""Shared fixtures: tiny random-weight checkpoints in the official and diffusers layouts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_official(tmp_path_factory) -> Path:
    from openwan.checkpoint.random_init import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-official", layout="official", seed=0)


@pytest.fixture(scope="session")
def tiny_diffusers(tiny_official, tmp_path_factory) -> Path:
    from openwan.checkpoint.convert import convert_checkpoint

    return convert_checkpoint(tiny_official, tmp_path_factory.mktemp("ckpt") / "tiny-diffusers", to="diffusers")


@pytest.fixture(scope="session")
def tiny_pipe(tiny_official):
    from openwan import load_pipeline

    return load_pipeline(tiny_official, device="cpu")


# Small enough for 2 CPU cores: 64x64 pixels, 5 frames -> latent 16x2x8x8 -> 32 DiT tokens.
SMALL = dict(width=64, height=64, frames=5, steps=4, seed=7)
