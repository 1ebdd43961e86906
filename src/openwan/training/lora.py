"""LoRA personalisation of the Wan DiT: inject trainable low-rank adapters (peft), export them in the
diffusers, ComfyUI or official naming, and merge LoRA files into a plain model for inference.

Training keeps the model a ``WanDiT`` (peft wraps the targeted ``nn.Linear`` children in place), so the
training loop, gradient checkpointing and the pipeline need no LoRA-specific code. Inference never
needs peft: ``merge_lora`` folds ``scale · (alpha / r) · B @ A`` into the Linear weights.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..checkpoint.lora_keys import NAMINGS, LoRAFile, LoRAWeights, Naming, lora_keys_for, normalize_lora, read_lora
from ..errors import CheckpointError, InputError

ADAPTER = "default"  # peft adapter name; one adapter per model is all training needs

DEFAULT_TARGETS = (
    "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
    "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
    "ffn.0", "ffn.2",
)


@dataclass
class LoRAConfig:
    """Adapter shape. ``targets`` are module paths inside each block (``blocks.N.<target>``) or top-level
    module paths (``text_embedding.0``); each must name at least one ``nn.Linear``."""

    rank: int = 16
    alpha: float | None = None  # None: alpha = rank, i.e. the update is B @ A unscaled
    dropout: float = 0.0
    targets: tuple[str, ...] = DEFAULT_TARGETS

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise InputError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if self.alpha is not None and not (math.isfinite(self.alpha) and self.alpha > 0):
            raise InputError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.targets, str) or not self.targets:
            raise InputError(f"LoRA targets must be a non-empty tuple of module paths, got {self.targets!r}")
        self.targets = tuple(self.targets)

    @property
    def lora_alpha(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha)


def _matches(name: str, target: str) -> bool:
    return name == target or re.fullmatch(rf"blocks\.\d+\.{re.escape(target)}", name) is not None


def _has_adapters(model: nn.Module) -> bool:
    # peft's tuner layers keep the wrapped layer as ``base_layer``; checked without importing peft.
    return any(hasattr(m, "base_layer") for m in model.modules())


def add_lora(model: nn.Module, cfg: LoRAConfig | None = None) -> nn.Module:
    """Inject LoRA adapters into ``model`` in place and return it (still a ``WanDiT``).

    Base weights are frozen; only the adapters' A and B train. A is random, B zero (peft's default), so
    the model's output is unchanged until training moves B. Adapter weights are kept in fp32 whatever
    the base dtype, so optimiser updates are not lost to bf16 rounding.
    """
    from peft import LoraConfig, inject_adapter_in_model

    cfg = cfg or LoRAConfig()
    if _has_adapters(model):
        raise InputError("the model already has LoRA adapters; add_lora takes a plain model")
    modules = dict(model.named_modules())
    hits = {t: [n for n in modules if _matches(n, t)] for t in cfg.targets}
    unmatched = [t for t, ns in hits.items() if not ns]
    if unmatched:
        raise InputError(f"LoRA targets match no module of the model: {', '.join(unmatched)} "
                         "(targets are paths inside a block, like 'self_attn.q' or 'ffn.0', or top-level paths)")
    not_linear = sorted({f"{n} ({type(modules[n]).__name__})" for ns in hits.values() for n in ns
                         if not isinstance(modules[n], nn.Linear)})
    if not_linear:
        raise InputError(f"LoRA targets must be Linear layers; these are not: {', '.join(not_linear[:12])}")
    names = sorted({n for ns in hits.values() for n in ns})
    peft_cfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.dropout,
                          target_modules="|".join(re.escape(n) for n in names))  # a str is full-matched as a regex
    model.requires_grad_(False)
    inject_adapter_in_model(peft_cfg, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            p.data = p.data.float()
            p.requires_grad_(True)
    model.lora_config = cfg  # read back by save_lora's metadata
    return model


def _adapter_weights(model: nn.Module) -> dict[str, LoRAWeights]:
    """The trained adapters as normalised weights (official module names, alpha consistent with peft's scaling)."""
    out = {}
    for name, m in model.named_modules():
        if hasattr(m, "base_layer") and ADAPTER in getattr(m, "lora_A", {}):
            r = m.r[ADAPTER]
            alpha = m.scaling[ADAPTER] * r  # equals lora_alpha, and stays right for rsLoRA
            out[name] = LoRAWeights(m.lora_A[ADAPTER].weight.detach(), m.lora_B[ADAPTER].weight.detach(), alpha)
    if not out:
        raise InputError("the model has no LoRA adapters; call add_lora first")
    return out


def lora_state_dict(model: nn.Module, naming: Naming = "diffusers") -> dict[str, torch.Tensor]:
    """The adapters of a model prepared by ``add_lora``, keyed in ``naming`` (diffusers, comfy or official)."""
    return lora_keys_for(_adapter_weights(model), naming)


def save_lora(model: nn.Module, path: str | os.PathLike, naming: Naming = "diffusers",
              metadata: Mapping[str, object] | None = None) -> Path:
    """Write the adapters as safetensors (atomically) and return the path.

    The header records rank, alpha, targets, naming and the base model's config, plus ``metadata``
    (non-string values stored as JSON). ``diffusers`` files fold alpha/r into B (see ``lora_keys_for``).
    """
    from ..checkpoint.io import write_safetensors
    from ..configs import variant_for

    if naming not in NAMINGS:
        raise InputError(f"unknown LoRA naming {naming!r}; expected one of {', '.join(NAMINGS)}")
    path = Path(path)
    if not path.name.endswith(".safetensors"):
        raise InputError(f"LoRA files are written as .safetensors; got {path}")
    weights = _adapter_weights(model)
    cfg: LoRAConfig | None = getattr(model, "lora_config", None)
    ranks = sorted({w.rank for w in weights.values()})
    alphas = sorted({w.alpha for w in weights.values()})
    header = {
        "format": "pt",
        "openwan_version": __version__,
        "lora_naming": naming,
        "lora_rank": json.dumps(ranks[0] if len(ranks) == 1 else ranks),
        "lora_alpha": json.dumps(alphas[0] if len(alphas) == 1 else alphas),
        "lora_alpha_folded_into_B": json.dumps(naming == "diffusers"),
        "lora_targets": json.dumps(list(cfg.targets) if cfg else sorted(weights)),
    }
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        variant = variant_for(config)
        header["base_model"] = variant.name if variant else f"custom {config.model_type}"
        header["base_model_config"] = json.dumps(config.to_dict())
    for k, v in (metadata or {}).items():
        if k in header:
            raise InputError(f"metadata key {k!r} is reserved for the LoRA description; use another name")
        header[str(k)] = v if isinstance(v, str) else json.dumps(v)
    write_safetensors(lora_keys_for(weights, naming), path, metadata=header)
    return path


@dataclass
class MergedLoRA:
    """What ``merge_lora`` folded into a model, enough to take it out again with ``unmerge_lora``."""

    source: str
    scale: float
    lora: LoRAFile = field(repr=False)

    @property
    def modules(self) -> list[str]:
        return list(self.lora.modules)


def _as_lora(lora: str | os.PathLike | Mapping[str, torch.Tensor] | LoRAFile) -> LoRAFile:
    if isinstance(lora, LoRAFile):
        return lora
    if isinstance(lora, Mapping):
        return normalize_lora(lora)
    return read_lora(lora)


def _check_fits(model: nn.Module, lora: LoRAFile) -> dict[str, nn.Linear]:
    modules = dict(model.named_modules())
    missing = [n for n in lora.modules if n not in modules]
    not_linear = [f"{n} ({type(modules[n]).__name__})" for n in lora.modules
                  if n in modules and not isinstance(modules[n], nn.Linear)]
    mismatched = [f"{n}: LoRA {tuple(w.B.shape[:1]) + tuple(w.A.shape[1:])} vs model {tuple(modules[n].weight.shape)}"
                  for n, w in lora.modules.items() if n in modules and isinstance(modules[n], nn.Linear)
                  and (w.B.shape[0], w.A.shape[1]) != tuple(modules[n].weight.shape)]
    if missing or not_linear or mismatched:
        def _lst(xs):
            return ", ".join(xs[:12]) + (f" … and {len(xs) - 12} more" if len(xs) > 12 else "")

        lines = [f"LoRA {lora.source} (naming: {lora.naming}) does not fit this model:"]
        if missing:
            lines.append(f"  modules the model does not have ({len(missing)}): {_lst(missing)}")
        if not_linear:
            lines.append(f"  modules that are not Linear layers ({len(not_linear)}): {_lst(not_linear)}")
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}; a LoRA for another model size?): {_lst(mismatched)}")
        raise CheckpointError("\n".join(lines))
    return {n: modules[n] for n in lora.modules}


def check_lora_scale(scale: float) -> float:
    """``scale`` as a finite float, or InputError."""
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise InputError(f"LoRA scale must be a number, got {scale!r}") from None
    if not math.isfinite(scale):
        raise InputError(f"LoRA scale must be finite, got {scale}")
    return scale


@torch.no_grad()
def _apply(model: nn.Module, lora: LoRAFile, scale: float) -> None:
    for name, layer in _check_fits(model, lora).items():
        w = layer.weight
        delta = lora.modules[name].delta(scale).to(w.device)
        # Add in fp32 and round once, so bf16 weights lose no more than one rounding.
        w.copy_((w.float() + delta).to(w.dtype))


def merge_lora(model: nn.Module, lora: str | os.PathLike | Mapping[str, torch.Tensor] | LoRAFile,
               scale: float = 1.0) -> MergedLoRA:
    """Fold a LoRA (file path, state dict in any recognised naming, or ``LoRAFile``) into the Linear weights
    of a plain (adapter-free) model in place: ``W += scale · (alpha / r) · B @ A``. Several LoRAs stack.

    Everything is checked before any weight changes: a module the model lacks or a shape mismatch raises
    CheckpointError naming the file.
    """
    scale = check_lora_scale(scale)
    if _has_adapters(model):
        raise InputError("merge_lora takes a plain model; this one has peft adapters injected "
                         "(save them with save_lora and merge the file into a model loaded from the base weights)")
    lf = _as_lora(lora)
    _check_fits(model, lf)
    _apply(model, lf, scale)
    return MergedLoRA(source=lf.source, scale=scale, lora=lf)


def unmerge_lora(model: nn.Module, merged: MergedLoRA) -> None:
    """Take a merged LoRA out again (``W -= scale · (alpha / r) · B @ A``).

    Exact up to one rounding of the weights' dtype per merge and unmerge: for bf16 weights keep a copy of
    the base weights (or reload them) when bit-exact restoration matters.
    """
    _apply(model, merged.lora, -merged.scale)
