"""``openwan info``: what a checkpoint path holds, read from file headers without building models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..configs import variant_for
from .io import read_state_dict
from .layout import find_checkpoint, identify_state_dict
from .loader import dit_config_from_file, strip_prefix


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Tensor name -> (shape, dtype) without reading tensor data (safetensors headers; mmap for .pth)."""
    files = [path]
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text())
        files = [path.parent / s for s in sorted(set(index["weight_map"].values()))]
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    for f in files:
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as sf:
                for k in sf.keys():
                    sl = sf.get_slice(k)
                    out[k] = (tuple(sl.get_shape()), str(sl.get_dtype()))
        else:
            out.update({k: (tuple(v.shape), str(v.dtype).removeprefix("torch."))
                        for k, v in read_state_dict(f).items()})
    return out


def _size_gb(path: Path | None) -> float | None:
    if path is None:
        return None
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text())
        return round(sum((path.parent / s).stat().st_size for s in set(index["weight_map"].values())) / 1e9, 3)
    return round(path.stat().st_size / 1e9, 3) if path.is_file() else None


def describe_checkpoint(path: str | os.PathLike) -> dict:
    """A JSON-able description: layout, component files, DiT config, variant and parameter count."""
    from .keymap_dit import dit_config_from_state_dict, dit_diffusers_to_official

    files = find_checkpoint(path)
    heads = _headers(files.dit)
    kind = identify_state_dict(heads.keys())
    # Meta tensors carry the shapes through the same key mapping the loader uses, at no memory cost.
    shapes = strip_prefix({k: torch.empty(s, device="meta") for k, (s, _) in heads.items()})
    if kind == "dit-diffusers":
        shapes = dit_diffusers_to_official(shapes)
    config = dit_config_from_file(files.dit_config) if files.dit_config else dit_config_from_state_dict(shapes)
    variant = variant_for(config)
    dtypes = sorted({d for _, d in heads.values()})
    components = {}
    for name in ("dit", "vae", "text_encoder", "tokenizer", "clip"):
        p = getattr(files, name)
        components[name] = None if p is None else {"path": str(p), "size_gb": _size_gb(p)}
    return {
        "path": str(Path(path)),
        "layout": files.layout,
        "dit_keys": kind,
        "variant": variant.name if variant else "custom",
        "description": variant.description if variant else "a custom Wan-architecture model",
        "dit_config": config.to_dict(),
        "dit_parameters": int(sum(t.numel() for t in shapes.values())),
        "dit_dtypes": dtypes,
        "components": components,
        "notes": files.notes,
    }


def format_description(d: dict) -> str:
    cfg = d["dit_config"]
    lines = [
        f"{d['path']}",
        f"  layout:    {d['layout']} (DiT keys: {d['dit_keys']})",
        f"  variant:   {d['variant']} — {d['description']}",
        f"  DiT:       {d['dit_parameters']:,} parameters, dtype {', '.join(d['dit_dtypes'])}; "
        f"dim {cfg['dim']}, {cfg['num_layers']} layers, {cfg['num_heads']} heads, "
        f"in {cfg['in_dim']} / out {cfg['out_dim']}, "
        f"type {cfg['model_type']}",
    ]
    for name, comp in d["components"].items():
        if comp is None:
            if name != "clip":
                lines.append(f"  {name + ':':<11}missing")
            continue
        size = f" ({comp['size_gb']} GB)" if comp["size_gb"] is not None else ""
        lines.append(f"  {name + ':':<11}{comp['path']}{size}")
    lines += [f"  note: {n}" for n in d["notes"]]
    return "\n".join(lines)
