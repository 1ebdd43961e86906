"""Teach a small umT5 encoder what the synthetic world's captions say, before the DiT learns to read it.

Wan's DiT reads a *pretrained* umT5: paraphrases and translations of one event land near each other, so the
DiT learns one mapping per attribute, not one per wording. A random encoder has no such prior. In the
shapes world "travels from left to right" and "从右往左滑动" differ only in word order, and each motion
has six wordings; the DiT would have to learn every one from the video loss alone.

So the recipe gives the world's encoder that prior from text only. Every real token of a caption predicts
every attribute the caption states (shape, colour, size, motion, and the second object of a collision;
``none`` where the caption leaves it out) through a linear head on the encoder's output. The heads are
thrown away; the encoder keeps the umT5 architecture and official layout, so the normal loader serves it.
Captions come from the *train* split's clip specs only; the held-out (shape, colour, motion) combinations
are scored, never trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..data.synth_captions import LANGUAGES, MOTION_TEMPLATES, MOTIONS
from ..data.synth_world import (
    COLOURS,
    SHAPES,
    SIZES,
    SynthWorldConfig,
    caption_for,
    sample_spec,
)
from ..errors import InputError

NONE = "none"  # the caption does not say
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": (NONE, *SHAPES),
    "colour": (NONE, *COLOURS),
    "size": (NONE, *SIZES),
    "motion": (NONE, *MOTIONS),
    "shape2": (NONE, *SHAPES),
    "colour2": (NONE, *COLOURS),
}


@dataclass(frozen=True)
class CaptionExample:
    caption: str
    labels: tuple[int, ...]  # one class index per ATTRIBUTES entry, in its order


def _labels(values: dict[str, str | None]) -> tuple[int, ...]:
    return tuple(ATTRIBUTES[name].index(values.get(name) or NONE) for name in ATTRIBUTES)


def caption_examples(world: SynthWorldConfig, split: str, specs: int) -> list[CaptionExample]:
    """Every paraphrase, in both languages, of the first ``specs`` clip specs of ``split`` (nothing rendered)."""
    out: list[CaptionExample] = []
    for i in range(specs):
        spec = sample_spec(world, i, split)
        labels = _labels({"shape": spec.shape, "colour": spec.colour, "motion": spec.motion,
                          "size": spec.size if spec.mention_size else None,
                          "shape2": spec.shape2, "colour2": spec.colour2})
        for language in LANGUAGES:
            for variant in range(len(MOTION_TEMPLATES[spec.motion][language])):
                out.append(CaptionExample(caption_for(spec, language, variant), labels))
    return out


@dataclass
class CaptionEncoderResult:
    steps: int
    final_loss: float
    heldout_accuracy: dict[str, float]  # per attribute, on held-out-combination captions


class _Heads(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.Linear(d_model, len(classes)) for name, classes in ATTRIBUTES.items()})

    def forward(self, states: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(states) for name, head in self.heads.items()}  # [B, L, classes]


def _batch(tokenizer, examples: list[CaptionExample]):
    tokens = tokenizer([e.caption for e in examples], padding="longest", add_special_tokens=True,
                       padding_side="right", return_tensors="pt")
    labels = torch.tensor([e.labels for e in examples])  # [B, attributes]
    return tokens.input_ids, tokens.attention_mask, labels


def _token_losses(model, heads: _Heads, tokenizer, examples: list[CaptionExample]):
    ids, mask, labels = _batch(tokenizer, examples)
    logits = heads(model(input_ids=ids, attention_mask=mask).last_hidden_state)
    keep = mask.bool()
    loss = sum(F.cross_entropy(lg[keep], labels[:, a, None].expand_as(mask)[keep])
               for a, lg in enumerate(logits.values()))
    return loss, logits, mask, labels


@torch.no_grad()
def caption_accuracy(model, heads: _Heads, tokenizer, examples: list[CaptionExample]) -> dict[str, float]:
    """Per attribute: share of captions whose token-averaged prediction is right."""
    _, logits, mask, labels = _token_losses(model, heads, tokenizer, examples)
    weights = mask[..., None].float() / mask.sum(1)[:, None, None]
    return {name: float(((lg.softmax(-1) * weights).sum(1).argmax(-1) == labels[:, a]).float().mean())
            for a, (name, lg) in enumerate(logits.items())}


def train_caption_encoder(model, tokenizer, world: SynthWorldConfig, *, steps: int, batch_size: int = 128,
                          lr: float = 2e-3, specs: int = 20000, seed: int = 0,
                          dropout_prompt: str = "") -> CaptionEncoderResult:
    """Train ``model`` (a ``UMT5EncoderModel``, in place) on the world's captions; returns held-out accuracy.

    ``dropout_prompt`` (the DiT's unconditional prompt) is trained to say nothing, so guidance's
    unconditional branch stays an "any video" request."""
    if steps < 1 or batch_size < 1:
        raise InputError(f"caption encoder training needs steps >= 1 and batch_size >= 1, got {steps}, {batch_size}")
    train = caption_examples(world, "train", specs)
    train.append(CaptionExample(dropout_prompt, _labels({})))
    heldout = caption_examples(world, "heldout", 4 * max(1, len(world.held_out)))
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    heads = _Heads(model.config.d_model)
    model.requires_grad_(True).train()
    params = [*model.parameters(), *heads.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    for _ in range(steps):  # steps >= 1, so loss is bound below
        idx = torch.randint(len(train), (batch_size,), generator=g).tolist()
        loss, *_ = _token_losses(model, heads, tokenizer, [train[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    model.requires_grad_(False).eval()
    return CaptionEncoderResult(steps=steps, final_loss=float(loss.detach()),
                                heldout_accuracy=caption_accuracy(model, heads, tokenizer, heldout))
