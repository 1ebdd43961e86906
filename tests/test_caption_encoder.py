"""Caption pretraining of the shapes world's umT5 encoder (the recipe's ``text`` step)."""

from __future__ import annotations

import re

import pytest
import torch

from openwan.data.synth_world import (
    SynthWorldConfig,
    heldout_prompts,
    is_held_out,
    sample_spec,
)
from openwan.errors import InputError
from openwan.training.caption_encoder import (
    ATTRIBUTES,
    NONE,
    caption_examples,
    train_caption_encoder,
)

WORLD = SynthWorldConfig()


def _label(example, name):
    return ATTRIBUTES[name][example.labels[list(ATTRIBUTES).index(name)]]


def test_examples_label_what_each_caption_states():
    examples = caption_examples(WORLD, "train", 40)
    specs = [sample_spec(WORLD, i, "train") for i in range(40)]
    assert not any(is_held_out(s, WORLD.held_out) for s in specs)
    assert any(re.search(r"[\u4e00-\u9fff]", e.caption) for e in examples)
    assert any(e.caption.isascii() for e in examples)
    for e in examples:
        shape, colour, size = _label(e, "shape"), _label(e, "colour"), _label(e, "size")
        assert NONE not in (shape, colour, _label(e, "motion"))
        if e.caption.isascii():
            assert colour in e.caption and shape in e.caption, e
            # the size label is "none" exactly when the caption has no size word ("larger" is not one)
            assert (size != NONE) == bool(re.search(r"\b(small|large)\b", e.caption)), e
        collision = _label(e, "motion") == "collides"
        assert (_label(e, "shape2") != NONE) == collision and (_label(e, "colour2") != NONE) == collision


def test_training_makes_translations_of_held_out_captions_agree(tmp_path):
    from openwan.checkpoint.layout import find_checkpoint
    from openwan.checkpoint.loader import load_text_encoder
    from openwan.training.recipe import Recipe, RecipeTextEncoder, build_scaffold

    recipe = Recipe(text_encoder=RecipeTextEncoder(d_model=48, d_ff=96, num_heads=2, d_kv=24, num_layers=2))
    files = find_checkpoint(build_scaffold(recipe, tmp_path / "scaffold"))
    encoder = load_text_encoder(files.text_encoder, files.tokenizer, expected_layout=files.expected_layout,
                                text_len=64)
    prompts = heldout_prompts(WORLD)  # one per held-out combination and language; never trained on
    en = [p["prompt"] for p in prompts if p["language"] == "en"]
    zh = [p["prompt"] for p in prompts if p["language"] == "zh"]

    def agreement() -> float:
        """How much closer each English prompt is to its own translation than to the other translations."""
        def pooled(texts):
            states, lengths = encoder.encode(texts)
            return torch.nn.functional.normalize(states.sum(1) / lengths[:, None], dim=-1)

        sim = pooled(en) @ pooled(zh).T  # [n, n]
        others = (sim.sum(1) - sim.diag()) / (len(en) - 1)
        return float((sim.diag() - others).mean())

    before = agreement()
    result = train_caption_encoder(encoder.model, encoder.tokenizer, WORLD, steps=120, batch_size=64, lr=3e-3,
                                   specs=400, seed=0)
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.model.parameters())
    after = agreement()
    assert before < 0.05 < after, (before, after)
    assert set(result.heldout_accuracy) == set(ATTRIBUTES)
    # after 120 steps every attribute of the unseen combinations is read well above chance
    for name, classes in ATTRIBUTES.items():
        assert result.heldout_accuracy[name] > 1.5 / len(classes), (name, result)


def test_bad_training_settings_are_named():
    with pytest.raises(InputError, match="steps >= 1"):
        train_caption_encoder(None, None, WORLD, steps=0)
