"""Reading and writing raw state dicts: safetensors (single or sharded with an index) and, only when
nothing else exists, ``.pth`` through ``torch.load(weights_only=True, mmap=True)``."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> StateDict:
    """Load every tensor of a checkpoint file (or a sharded safetensors index) without executing code.

    Safetensors are memory-mapped; ``.pth`` files go through ``weights_only=True`` and ``mmap=True`` so
    a 10 GB text encoder costs no extra RAM until it is used.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint file not found: {p}")
    name = p.name
    try:
        if name.endswith(".safetensors.index.json"):
            return _read_sharded(p, device)
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(p), device=str(device))
        if name.endswith((".pth", ".pt", ".bin", ".ckpt")):
            obj = torch.load(str(p), map_location=device, weights_only=True, mmap=True)
            return _unwrap_state_dict(obj, p)
    except CheckpointError:
        raise
    except Exception as e:  # corrupt or truncated file: say which one
        raise CheckpointError(f"could not read checkpoint {p}: {type(e).__name__}: {e}") from e
    raise CheckpointError(f"unsupported checkpoint format {p} (expected .safetensors, an index json or .pth)")


def _read_sharded(index_path: Path, device) -> StateDict:
    from safetensors.torch import load_file

    try:
        index = json.loads(index_path.read_text())
        weight_map: Mapping[str, str] = index["weight_map"]
    except Exception as e:
        raise CheckpointError(f"invalid safetensors index {index_path}: {e}") from e
    shards = sorted(set(weight_map.values()))
    missing = [s for s in shards if not (index_path.parent / s).exists()]
    if missing:
        raise CheckpointError(
            f"sharded checkpoint {index_path} lists shards that are not on disk: {', '.join(missing)}"
        )
    sd: StateDict = {}
    for shard in shards:
        sd.update(load_file(str(index_path.parent / shard), device=str(device)))
    absent = sorted(set(weight_map) - set(sd))
    if absent:
        raise CheckpointError(f"{index_path}: tensors listed in the index are absent from the shards: {absent[:10]}")
    return sd


def _unwrap_state_dict(obj, p: Path) -> StateDict:
    # Training checkpoints often nest the weights; accept the common wrappers.
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], Mapping) and not isinstance(obj[key], torch.Tensor):
                obj = obj[key]
                break
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise CheckpointError(f"{p} does not contain a state dict of tensors")


def write_safetensors(sd: Mapping[str, torch.Tensor], path: str | os.PathLike, *, max_shard_bytes: int | None = None,
                      metadata: dict[str, str] | None = None) -> list[Path]:
    """Write ``sd`` as safetensors atomically; shard with a ``.index.json`` when above ``max_shard_bytes``.

    ``path`` is the single-file name (``diffusion_pytorch_model.safetensors``); shards are named
    ``<stem>-0000k-of-0000n.safetensors`` like the official and diffusers releases.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in sd.items()}
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        nbytes = v.numel() * v.element_size()
        if max_shard_bytes and groups[-1] and size + nbytes > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][k] = v
        size += nbytes
    if len(groups) == 1:
        atomic_write(path, lambda tmp: save_file(groups[0], tmp, metadata=metadata or {"format": "pt"}))
        return [path]
    stem = path.name[: -len(".safetensors")]
    written, weight_map = [], {}
    for i, g in enumerate(groups, 1):
        shard = path.with_name(f"{stem}-{i:05d}-of-{len(groups):05d}.safetensors")
        atomic_write(shard, lambda tmp, g=g: save_file(g, tmp, metadata=metadata or {"format": "pt"}))
        written.append(shard)
        weight_map.update({k: shard.name for k in g})
    total = sum(v.numel() * v.element_size() for v in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    idx = path.with_name(path.name + ".index.json")
    write_text_atomic(idx, json.dumps(index, indent=2))
    return written + [idx]


def write_pth(sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Write a plain ``.pth`` state dict (the official layout for the VAE and T5) atomically."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in sd.items()}

    def write(tmp: str) -> None:
        # Through a file object: torch.save then names the zip's records "archive/...", not after the
        # temporary file, so the same weights always give the same bytes.
        with open(tmp, "wb") as f:
            torch.save(tensors, f)

    atomic_write(path, write)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)

    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, _w)
    return path


def atomic_write(path: str | os.PathLike, write, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_name)`` on a temporary file next to ``path``, then rename it into place, so a crash
    never leaves a half-written file under the final name. The file gets the usual umask permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_into(
    module: nn.Module,
    sd: Mapping[str, torch.Tensor],
    *,
    source: str,
    expected_layout: str = "",
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Strictly load ``sd`` into ``module`` (possibly built on the meta device) by assignment.

    Raises CheckpointError naming ``source``, every missing and unexpected key and every shape
    mismatch, so a wrong file in a slot is caught before any compute. Floating tensors are cast to
    ``dtype`` when given. Assignment avoids a second copy of the weights.
    """
    own = module.state_dict(keep_vars=True)
    got = dict(sd)
    missing = sorted(k for k in own if k not in got)
    unexpected = sorted(k for k in got if k not in own)
    mismatched = [
        f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in got and tuple(got[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(describe_mismatch(source, missing, unexpected, mismatched, expected_layout))
    fixed = {}
    for k, v in got.items():
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        if v.device.type == "cpu" and v.data_ptr() % 64:
            # Memory-mapped tensors sit wherever the file header puts them; CPU kernels take different
            # vector paths for unaligned data, so the same weights would give slightly different numbers
            # depending on the file they came from. A copy gives allocator-aligned memory.
            v = v.clone()
        fixed[k] = v
    module.load_state_dict(fixed, strict=True, assign=True)
    return module


def describe_mismatch(source: str, missing: list[str], unexpected: list[str], mismatched: list[str],
                      expected_layout: str = "", limit: int = 12) -> str:
    def _lst(xs: list[str]) -> str:
        more = f" … and {len(xs) - limit} more" if len(xs) > limit else ""
        return ", ".join(xs[:limit]) + more

    lines = [f"checkpoint {source} does not match the model:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {_lst(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {_lst(unexpected)}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): {_lst(mismatched)}")
    if expected_layout:
        lines.append(f"  expected: {expected_layout}")
    return "\n".join(lines)
