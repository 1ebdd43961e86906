"""Prompt sensitivity: does the DiT listen to each attribute word of the prompt?

Generated samples tell *whether* a model gets an attribute right, not *why* it fails. This probe asks
the DiT directly. For held-out shapes-world clips (rendered, so the true video is known) it compares the
flow-matching loss given the clip's true caption with the loss given a *counterfactual* caption that
differs in one attribute only — another colour, another shape, or the opposite motion ("moves left" ->
"moves right") — at the same noise and noise levels. A DiT that uses the attribute predicts the true
clip better from the true caption; the relative loss increase is its sensitivity to that attribute.
An increase near 0 means the model ignores the word: what it generates for that attribute is decided
by the noise, and no guidance scale can fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import InputError
from ..media import frames_to_tensor
from ..validation import check_int

ATTRIBUTES = ("colour", "shape", "motion")
# Motions with an opposite: swapping one for the other changes the caption's motion words only.
OPPOSITE_MOTION = {"moves left": "moves right", "moves right": "moves left", "moves up": "moves down",
                   "moves down": "moves up", "camera pans left": "camera pans right",
                   "camera pans right": "camera pans left", "grows": "shrinks", "shrinks": "grows"}
DEFAULT_SIGMAS = (0.9, 0.7, 0.5)  # high and middle noise: where the layout and motion are decided


@dataclass
class PromptSensitivity:
    """Per clip and attribute: the mean loss (over ``sigmas``) with the true and the counterfactual caption."""

    sigmas: tuple[float, ...]
    rows: list[dict[str, Any]]

    def by_attribute(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for attr in ATTRIBUTES:
            rows = [r for r in self.rows if r["attribute"] == attr]
            if not rows:
                continue
            true = float(np.mean([r["loss_true"] for r in rows]))
            swapped = float(np.mean([r["loss_counterfactual"] for r in rows]))
            out[attr] = {"clips": len(rows), "loss_true": true, "loss_counterfactual": swapped,
                         "increase": swapped / true - 1,
                         # Share of clips where the true caption explains the clip better.
                         "true_caption_wins": float(np.mean([r["loss_counterfactual"] > r["loss_true"]
                                                             for r in rows]))}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"sigmas": list(self.sigmas), "attributes": self.by_attribute(), "clips": self.rows}


def _counterfactual(spec, attribute: str, colours: Sequence[str], shapes: Sequence[str]):
    """``spec`` with ``attribute`` changed to the next value (the opposite motion); None if it has none."""
    if attribute == "motion":
        other = OPPOSITE_MOTION.get(spec.motion)
        return None if other is None else replace(spec, motion=other)
    if attribute == "colour":
        i = colours.index(spec.colour)
        other = next(c for c in (colours[(i + k) % len(colours)] for k in range(1, len(colours)))
                     if c != spec.colour2)
        return replace(spec, colour=other)
    i = shapes.index(spec.shape)
    return replace(spec, shape=shapes[(i + 1) % len(shapes)])


def prompt_sensitivity(pipe, *, clips: int = 24, sigmas: Sequence[float] = DEFAULT_SIGMAS, seed: int = 0,
                       batch_size: int = 8, progress: bool = True) -> PromptSensitivity:
    """Probe ``pipe``'s DiT with ``clips`` held-out shapes-world clips per attribute (see the module doc).

    Clips are the world's held-out split at the pipeline's default size and frame count (for motion, only
    clips whose motion has an opposite); the noise is drawn from ``seed`` and shared by both captions.
    """
    import torch
    from tqdm.auto import tqdm

    from ..data.synth_world import COLOURS, SHAPES, SynthWorldConfig, caption_for, render_clip, sample_spec
    from ..training.flow_matching import model_timesteps, noisy_latents

    check_int("clips", clips, 1)
    check_int("seed", seed, 0)
    check_int("batch_size", batch_size, 1)
    sigmas = tuple(float(s) for s in sigmas)
    if not sigmas or not all(0 < s < 1 for s in sigmas):
        raise InputError(f"sigmas must be noise levels in (0, 1), got {sigmas}")
    d = pipe.defaults
    config = SynthWorldConfig(width=d.size[0], height=d.size[1], frames=d.frames)
    colours, shapes = tuple(COLOURS), tuple(SHAPES)

    # (attribute, spec, counterfactual spec) triples, drawn in held-out order.
    jobs = []
    for attr in ATTRIBUTES:
        found, index = 0, 0
        while found < clips:
            spec = sample_spec(config, index, "heldout")
            index += 1
            other = _counterfactual(spec, attr, colours, shapes)
            if other is not None:
                jobs.append((attr, spec, other))
                found += 1

    param = next(pipe.dit.parameters())
    generator = torch.Generator("cpu").manual_seed(seed)
    rows: list[dict[str, Any]] = []
    # The attributes probe the same held-out clips: render and encode each one once.
    latents: dict[Any, torch.Tensor] = {}
    bar = tqdm(total=len(jobs), desc="prompt sensitivity", unit="clip", disable=not progress)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        true_caps = [caption_for(spec, spec.language, spec.variant) for _, spec, _ in chunk]
        swap_caps = [caption_for(other, spec.language, spec.variant) for _, spec, other in chunk]
        with torch.no_grad():
            new = [spec for spec in dict.fromkeys(spec for _, spec, _ in chunk) if spec not in latents]
            if new:
                video = torch.stack([frames_to_tensor(render_clip(spec)[0]) for spec in new])
                with pipe.on_device("vae", pipe.device) as vae:
                    vp = next(vae.parameters())
                    z = vae.encode(video.to(vp.device, vp.dtype)).to(param.device, torch.float32)
                latents.update(zip(new, z))
            x0 = torch.stack([latents[spec] for _, spec, _ in chunk])
            ctx_true, ctx_swap = pipe.encode_prompts(true_caps), pipe.encode_prompts(swap_caps)
            losses = torch.zeros(2, len(chunk))
            with pipe.on_device("dit", pipe.device) as dit:
                for s in sigmas:
                    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
                    sigma = torch.full((len(chunk),), s, device=x0.device)
                    xt, target = noisy_latents(x0, noise, sigma)
                    t = model_timesteps(sigma)
                    for k, ctx in enumerate((ctx_true, ctx_swap)):
                        err = (dit(xt.to(param.dtype), t, ctx).float() - target) ** 2
                        losses[k] += err.flatten(1).mean(1).cpu() / len(sigmas)
        for (attr, spec, other), a, b, tc, sc in zip(chunk, losses[0].tolist(), losses[1].tolist(),
                                                      true_caps, swap_caps):
            rows.append({"attribute": attr, "caption": tc, "counterfactual": sc, "language": spec.language,
                         "true": getattr(spec, attr), "swapped_to": getattr(other, attr), "seed": spec.seed,
                         "loss_true": a, "loss_counterfactual": b})
        bar.update(len(chunk))
    bar.close()
    return PromptSensitivity(sigmas, rows)


__all__ = ["ATTRIBUTES", "DEFAULT_SIGMAS", "OPPOSITE_MOTION", "PromptSensitivity", "prompt_sensitivity"]
