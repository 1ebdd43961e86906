"""LoRA file key naming: read diffusers/peft, ComfyUI, kohya/musubi and our own files into one normalised
form (official module names), and write that form back out in any of those namings.

Normalised form: ``{official module name: LoRAWeights(A [r, in], B [out, r], alpha)}``; the weight update
of a module is ``W += scale · (alpha / r) · B @ A``.

Namings recognised (``<m>`` a module path):

* ``diffusers`` — ``transformer.<diffusers m>.lora_A.weight`` / ``lora_B.weight`` (the prefix may be
  absent); alpha comes from ``<m>.alpha`` tensors when present, else from the ``lora_adapter_metadata``
  JSON that diffusers writes into the safetensors header, else alpha = rank (peft's default);
* ``comfy`` — ``diffusion_model.<official m>.lora_down.weight`` / ``lora_up.weight`` / ``alpha``
  (also with ``lora_A``/``lora_B``, and the ``model.diffusion_model.`` prefix);
* ``kohya`` — the flattened ``lora_unet_blocks_0_self_attn_q.lora_down.weight`` form (musubi-tuner);
* ``official`` — ours: ``<official m>.lora_A.weight`` / ``lora_B.weight`` / ``alpha``.

Module paths are renamed with the DiT key tables of ``keymap_dit``, so the LoRA and checkpoint namings
can never disagree.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch

from ..errors import CheckpointError, InputError
from .keymap_dit import _BLOCK, _TOP, _inverse, _rename
from .layout import identify_state_dict

Naming = Literal["diffusers", "comfy", "official"]
NAMINGS: tuple[str, ...] = ("diffusers", "comfy", "official")

DIFFUSERS_PREFIX = "transformer."
COMFY_PREFIX = "diffusion_model."
KOHYA_PREFIX = "lora_unet_"
DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"  # diffusers' safetensors header entry holding the LoraConfig

# Key endings -> which factor they hold. lora_A/lora_down is the first (input-side) factor.
_SUFFIXES = {
    ".lora_A.weight": "A", ".lora_down.weight": "A",
    ".lora_B.weight": "B", ".lora_up.weight": "B",
    ".alpha": "alpha",
}
# Tensors other trainers add that a plain low-rank merge cannot represent.
_UNSUPPORTED = (".diff", ".diff_b", ".dora_scale", ".lora_magnitude_vector", ".lora_B.bias", ".lora_up.bias")
# Whole-file prefixes, longest first so "model.diffusion_model." wins over "diffusion_model.".
_PREFIXES = ("model.diffusion_model.", COMFY_PREFIX, "base_model.model.", DIFFUSERS_PREFIX, KOHYA_PREFIX)
_BLOCK_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")
_LIMIT = 12


class LoRAWeights(NamedTuple):
    """One module's low-rank update: A [r, in] (lora_down), B [out, r] (lora_up), alpha."""

    A: torch.Tensor
    B: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def delta(self, scale: float = 1.0) -> torch.Tensor:
        """``scale · (alpha / r) · B @ A`` in fp32, [out, in]."""
        return (scale * self.alpha / self.rank) * (self.B.float() @ self.A.float())


@dataclass
class LoRAFile:
    """A LoRA normalised to official module names, with where it came from and the naming it used."""

    modules: dict[str, LoRAWeights]
    source: str
    naming: str  # the detected naming, in words (for messages)
    metadata: dict[str, str] = field(default_factory=dict)  # the safetensors header, if any


def _lst(xs) -> str:
    xs = list(xs)
    more = f" … and {len(xs) - _LIMIT} more" if len(xs) > _LIMIT else ""
    return ", ".join(xs[:_LIMIT]) + more


# --- module names ---------------------------------------------------------------------------------------

def _is_module(name: str, top: Mapping[str, str], block: Mapping[str, str]) -> bool:
    m = _BLOCK_NAME.match(name)
    return m.group(2) in block if m else name in top


def _official_module(name: str) -> bool:
    return _is_module(name, _TOP, _BLOCK)


def _diffusers_module(name: str) -> bool:
    return _is_module(name, _TOP.values(), _BLOCK.values())


def official_to_diffusers_module(name: str) -> str:
    """``blocks.0.self_attn.q`` -> ``blocks.0.attn1.to_q``."""
    return _rename(name, _TOP, _BLOCK, "official")


def diffusers_to_official_module(name: str) -> str:
    """``blocks.0.attn1.to_q`` -> ``blocks.0.self_attn.q``."""
    return _rename(name, _inverse(_TOP), _inverse(_BLOCK), "diffusers")


# kohya flattens dots to underscores; names themselves contain underscores, so unflatten by table lookup.
_FLAT_BLOCK = {p.replace(".", "_"): p for p in _BLOCK}
_FLAT_TOP = {p.replace(".", "_"): p for p in _TOP}


def _unflatten_kohya(name: str) -> str | None:
    m = re.fullmatch(r"blocks_(\d+)_(.+)", name)
    if m:
        rest = _FLAT_BLOCK.get(m.group(2))
        return f"blocks.{m.group(1)}.{rest}" if rest else None
    return _FLAT_TOP.get(name)


# --- reading --------------------------------------------------------------------------------------------

def read_lora(path: str | os.PathLike) -> LoRAFile:
    """Read a LoRA file (.safetensors, or .pt/.pth/.bin) of any recognised naming into official module names.

    Raises CheckpointError naming the file when it is missing, holds no LoRA (e.g. a full DiT checkpoint),
    or has keys that are not a LoRA of a Wan 2.1 DiT module.
    """
    from .io import read_state_dict

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"LoRA file not found: {p}")
    sd = read_state_dict(p)
    metadata: dict[str, str] = {}
    if p.name.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            metadata = dict(f.metadata() or {})
    return normalize_lora(sd, source=str(p), metadata=metadata)


def normalize_lora(sd: Mapping[str, torch.Tensor], *, source: str = "<state dict>",
                   metadata: Mapping[str, str] | None = None) -> LoRAFile:
    """Normalise a LoRA state dict of any recognised naming; see the module docstring."""
    metadata = dict(metadata or {})
    keys = list(sd)
    if not any(k.endswith(s) for k in keys for s, kind in _SUFFIXES.items() if kind != "alpha"):
        kind = identify_state_dict(keys)
        if any(".lora_A." in k for k in keys):  # model.state_dict() of a peft-injected model: adapter names in keys
            hint = "; it looks like a whole model's state dict with peft adapters injected: export them with save_lora"
        elif kind != "unknown":
            hint = f"; its keys look like a full model checkpoint ({kind}), which is loaded as the model, not as a LoRA"
        else:
            hint = ""
        raise CheckpointError(f"{source} is not a LoRA file: it has no lora_A/lora_B (or lora_down/lora_up) "
                              f"tensors{hint}. First keys: {_lst(sorted(keys))}")
    unsupported = sorted(k for k in keys if k.endswith(_UNSUPPORTED))
    if unsupported:
        raise CheckpointError(f"{source} holds tensors a low-rank merge cannot apply (DoRA magnitudes, bias or "
                              f"full-weight diffs): {_lst(unsupported)}")

    prefix = _common_prefix(keys, source)
    parsed: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for k in keys:
        rest = k[len(prefix):]
        suffix = next((s for s in _SUFFIXES if rest.endswith(s)), None)
        if suffix is None:
            unknown.append(k)
            continue
        parsed.setdefault(rest[: -len(suffix)], {})[_SUFFIXES[suffix]] = sd[k]
    naming, renamed, bad = _rename_modules(list(parsed), prefix)
    if unknown or bad:
        lines = [f"{source} has keys that are not a LoRA of a Wan 2.1 DiT (detected naming: {naming}):"]
        if unknown:
            lines.append(f"  keys that are not LoRA factors or alphas ({len(unknown)}): {_lst(unknown)}")
        if bad:
            lines.append(f"  unknown module names ({len(bad)}): {_lst(prefix + b for b in bad)}")
        raise CheckpointError("\n".join(lines))

    default_alpha = _metadata_alpha(metadata, source) if naming.startswith("diffusers") else None
    modules: dict[str, LoRAWeights] = {}
    problems = []
    for name, parts in parsed.items():
        a, b = parts.get("A"), parts.get("B")
        if a is None or b is None:
            problems.append(f"{prefix}{name}: has only {' and '.join(sorted(parts))}; "
                            "needs both A (lora_A/lora_down) and B (lora_B/lora_up)")
            continue
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            problems.append(f"{prefix}{name}: A {tuple(a.shape)} and B {tuple(b.shape)} are not [r, in] and [out, r] "
                            "(only LoRAs of Linear layers are supported)")
            continue
        if "alpha" in parts:
            if parts["alpha"].numel() != 1:
                problems.append(f"{prefix}{name}.alpha: expected a scalar, got shape {tuple(parts['alpha'].shape)}")
                continue
            alpha = float(parts["alpha"].item())
        elif default_alpha is not None:
            alpha = default_alpha(name, a.shape[0])
        else:
            alpha = float(a.shape[0])  # no alpha stored: the update is B @ A unscaled (peft/diffusers convention)
        modules[renamed[name]] = LoRAWeights(a, b, alpha)
    if problems:
        raise CheckpointError(f"{source} (naming: {naming}) has malformed LoRA entries:\n  " + "\n  ".join(problems))
    return LoRAFile(modules=modules, source=source, naming=naming, metadata=metadata)


def _common_prefix(keys: list[str], source: str) -> str:
    found = {next((p for p in _PREFIXES if k.startswith(p)), "") for k in keys}
    if len(found) > 1:
        groups = {p or "(no prefix)": [k for k in keys if next((q for q in _PREFIXES if k.startswith(q)), "") == p]
                  for p in found}
        raise CheckpointError(f"{source} mixes key prefixes {sorted(groups)}; a LoRA file must use one naming. "
                              + "; ".join(f"{p}: {_lst(ks[:3])}" for p, ks in groups.items()))
    return found.pop()


def _rename_modules(names: list[str], prefix: str) -> tuple[str, dict[str, str], list[str]]:
    """(detected naming, {file module name: official name}, names that fit no naming)."""
    if prefix == KOHYA_PREFIX:
        renamed = {n: _unflatten_kohya(n) for n in names}
        return "kohya (lora_unet_…)", {n: o for n, o in renamed.items() if o}, [n for n, o in renamed.items() if not o]
    official = [n for n in names if _official_module(n)]
    diffusers = [n for n in names if _diffusers_module(n)]
    # patch_embedding is named alike in both; decide by the majority, then require every name to fit.
    use_diffusers = len(diffusers) > len(official) or prefix == DIFFUSERS_PREFIX
    if prefix in (COMFY_PREFIX, "model.diffusion_model."):
        use_diffusers = False
    if use_diffusers:
        label = "diffusers/peft"
        bad = [n for n in names if not _diffusers_module(n)]
        return label, {n: diffusers_to_official_module(n) for n in names if n not in bad}, bad
    label = {"": "official (openwan)", "base_model.model.": "peft (official module names)"}.get(prefix, "ComfyUI")
    bad = [n for n in names if not _official_module(n)]
    return label, {n: n for n in names if n not in bad}, bad


def _metadata_alpha(metadata: Mapping[str, str], source: str) -> Callable[[str, int], float] | None:
    """alpha per (diffusers module name, rank) from diffusers' ``lora_adapter_metadata`` (a peft LoraConfig)."""
    raw = metadata.get(DIFFUSERS_METADATA_KEY)
    if raw is None:
        return None
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{source}: the {DIFFUSERS_METADATA_KEY} header entry is not valid JSON: {e}") from e
    if any(k.startswith(DIFFUSERS_PREFIX) for k in cfg):  # diffusers packs the config as "transformer.<field>"
        cfg = {k[len(DIFFUSERS_PREFIX):]: v for k, v in cfg.items() if k.startswith(DIFFUSERS_PREFIX)}
    if cfg.get("use_dora"):
        raise CheckpointError(f"{source} is a DoRA adapter (use_dora in {DIFFUSERS_METADATA_KEY}); "
                              "only plain LoRA can be merged")
    base = cfg.get("lora_alpha")
    patterns = dict(cfg.get("alpha_pattern") or {})
    rslora = bool(cfg.get("use_rslora"))

    def alpha(name: str, rank: int) -> float:
        # The same match as peft's get_pattern_key: a pattern names the end of the module path.
        a = next((v for k, v in patterns.items() if re.match(rf"(.*\.)?({k})$", name)), base)
        if a is None:
            return float(rank)
        # rsLoRA scales by alpha/sqrt(r); express it as an alpha for the alpha/r convention.
        return float(a) * math.sqrt(rank) if rslora else float(a)

    return alpha


# --- writing --------------------------------------------------------------------------------------------

def lora_keys_for(modules: Mapping[str, LoRAWeights], naming: Naming) -> dict[str, torch.Tensor]:
    """Write normalised LoRA weights as a state dict in ``naming``.

    ``diffusers`` files carry no alpha tensors (diffusers rejects keys without "lora" in them), so alpha/r
    is folded into B there: the product, which is all a merge or a forward pass uses, is unchanged, and the
    file then means the same to every loader, including those that ignore header metadata.
    """
    if naming not in NAMINGS:
        raise InputError(f"unknown LoRA naming {naming!r}; expected one of {', '.join(NAMINGS)}")
    out: dict[str, torch.Tensor] = {}
    for name, w in modules.items():
        if naming == "diffusers":
            key = DIFFUSERS_PREFIX + official_to_diffusers_module(name)
            out[f"{key}.lora_A.weight"] = w.A
            out[f"{key}.lora_B.weight"] = w.B if w.alpha == w.rank else (w.B.float() * (w.alpha / w.rank)).to(w.B.dtype)
        else:
            key = (COMFY_PREFIX if naming == "comfy" else "") + name
            down, up = ("lora_down", "lora_up") if naming == "comfy" else ("lora_A", "lora_B")
            out[f"{key}.{down}.weight"] = w.A
            out[f"{key}.{up}.weight"] = w.B
            out[f"{key}.alpha"] = torch.tensor(float(w.alpha), dtype=torch.float32)
    return out
