"""The model that ships inside the package: a small Wan trained on the procedural shapes world.

``openwan generate PROMPT`` without ``--model`` (and ``openwan.load_pipeline()`` without a path) use it.
It is the full Wan 2.1 architecture at toy width — DiT, 4x8x8 causal Wan-VAE, umT5 text encoder with a
bilingual tokenizer trained on the world's captions — stored in the official layout, so it loads
through the same code as the released checkpoints. ``configs/shapes-world/recipe.toml`` reproduces it
(``openwan recipe configs/shapes-world/recipe.toml``); ``MODEL_CARD.md`` in its folder says how it was
made and how it scores on ``openwan bench shapes``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

BUNDLED_MODEL_NAME = "shapes-world"


def bundled_model_path() -> Path:
    """Folder of the bundled model (official layout + sample_config.json)."""
    path = Path(__file__).resolve().parent / BUNDLED_MODEL_NAME
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"the bundled model is missing from this installation (expected {path}); reinstall openwan, "
            "rebuild it with `openwan recipe configs/shapes-world/recipe.toml`, or pass --model PATH")
    return path
