"""Shared fixtures: tiny random-weight checkpoints in the official and diffusers layouts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads, then restore the count it had."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


# configs/shapes-world/recipe.toml shortened to seconds, per `openwan recipe` override flag (--set, --vae-set, ...);
# tests/test_recipe.py and tests/test_bench_shapes.py run it through the CLI with SHORT_SHAPES_RECIPE_ARGS.
_SHORT_SHAPES_RECIPE: dict[str, list[str]] = {
    "--set": ["extra_data.0.clips=4",  # the fast pans: a full batch of the first DiT stage
              "data.clips=16", "stats_clips=4", "text_encoder.train_steps=2", "text_encoder.train_specs=20"],
    "--vae-set": ["stages.0.steps=2", "stages.0.warmup_steps=0", "stages.0.batch_size=4",
                  "stages.1.steps=2", "stages.1.batch_size=2"],
    "--dit-set": ["stages.0.steps=3", "stages.0.warmup_steps=0", "stages.0.batch_size=4",
                  # batch 1 in the second stage: of the 16 clips, its collisions subset holds one
                  "stages.1.steps=2", "stages.1.warmup_steps=0", "stages.1.batch_size=1",
                  "logging.progress=false",
                  # dit.toml compiles the DiT; at 5 steps the compiling (twice: batch 4, then 1) is most of the
                  # cost. tests/test_trainer.py covers the compiled step, test_recipe.py the recipe's compile check.
                  "run.compile=false"],
    # the decoder step (decoder.toml), at batch 1: the 16 clips hold two falls
    "--decoder-set": ["stages.0.steps=2", "stages.0.batch_size=1", "logging.progress=false"],
    # the DiT fine-tune (dit-hard-cases.toml), at batch 1: its smallest subsets of the 16 clips hold one clip
    "--finetune-set": ["stages.0.steps=2", "stages.0.warmup_steps=0", "stages.0.batch_size=1",
                       "logging.progress=false", "run.compile=false"],
}

SHORT_SHAPES_RECIPE_ARGS: list[str] = [arg for flag, items in _SHORT_SHAPES_RECIPE.items()
                                       for item in items for arg in (flag, item)]
