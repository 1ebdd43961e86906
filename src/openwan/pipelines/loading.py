"""``load_pipeline``: one call from a checkpoint path to a ready :class:`WanPipeline`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..checkpoint.io import write_text_atomic
from ..checkpoint.layout import CheckpointFiles, find_checkpoint
from ..checkpoint.loader import load_dit, load_text_encoder, load_vae
from ..checkpoint.lora_keys import read_lora
from ..configs import SampleDefaults, variant_for
from ..devices import resolve_device, resolve_dtype
from ..errors import CheckpointError
from .text_to_video import WanPipeline

log = logging.getLogger(__name__)


def resolve_files(
    path: str | os.PathLike,
    *,
    vae: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
) -> CheckpointFiles:
    """Locate every component, with explicit per-component paths overriding what the layout provides."""
    files = find_checkpoint(path)
    if vae is not None:
        files.vae, files.vae_config = Path(vae), None
    if text_encoder is not None:
        te = Path(text_encoder)
        if te.is_dir():  # a transformers folder: config.json + model*.safetensors
            files.text_encoder_config = te / "config.json"
            files.text_encoder = next(
                (te / n for n in ("model.safetensors", "model.safetensors.index.json") if (te / n).exists()), te
            )
        else:
            files.text_encoder, files.text_encoder_config = te, None
    if tokenizer is not None:
        files.tokenizer = Path(tokenizer)
    missing = [n for n, p in (("VAE", files.vae), ("text encoder", files.text_encoder), ("tokenizer", files.tokenizer))
               if p is None]
    if missing:
        raise CheckpointError(
            f"{path}: no {', '.join(missing)} found ({files.layout} layout); give "
            + ", ".join(f"--{m.replace(' ', '-')}" for m in missing)
            + f" or use a complete checkpoint\nexpected {files.expected_layout}"
        )
    return files


SAMPLE_CONFIG = "sample_config.json"


def write_sample_config(model_dir: str | os.PathLike, sample: SampleDefaults) -> Path:
    """Write ``sample`` as ``model_dir/sample_config.json`` (atomically); returns its path."""
    path = Path(model_dir) / SAMPLE_CONFIG
    write_text_atomic(path, json.dumps(sample.to_file_dict(), indent=2, ensure_ascii=False) + "\n")
    return path


def read_sample_defaults(root: str | os.PathLike | None) -> SampleDefaults | None:
    """The sampling defaults a custom checkpoint ships in ``sample_config.json`` (None when it has none)."""
    if root is None or not Path(root).is_dir() or not (Path(root) / SAMPLE_CONFIG).is_file():
        return None
    path = Path(root) / SAMPLE_CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: must hold a JSON object of sampling defaults")
    try:
        return SampleDefaults.from_file_dict(data, str(path))
    except TypeError as e:
        raise CheckpointError(f"{path}: {e}") from e


def load_pipeline(
    path: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    text_encoder_device: str | torch.device | None = None,
    text_encoder_dtype: str | torch.dtype | None = None,
    vae_dtype: str | torch.dtype = torch.float32,
    offload: bool = False,
    vae: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    tokenizer: str | os.PathLike | None = None,
    loras: Sequence[tuple[str | os.PathLike, float]] = (),
) -> WanPipeline:
    """Load a Wan 2.1 checkpoint (official directory, diffusers directory or single DiT file);
    ``path=None`` loads the bundled shapes-world model (:mod:`openwan.bundled`).

    ``device=None`` picks CUDA, MPS or CPU; ``dtype`` (DiT) defaults to bf16 on accelerators and fp32 on
    the CPU; the VAE runs in fp32 like the official code. ``offload`` keeps every model on the CPU and
    moves each to ``device`` only while it runs; ``text_encoder_device="cpu"`` runs umT5 on the CPU.
    ``loras`` = [(path, scale), ...] are merged into the DiT in order (see ``WanPipeline.load_lora``).
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    te_dev = resolve_device(text_encoder_device) if text_encoder_device else dev
    te_dt = resolve_dtype(text_encoder_dtype, te_dev) if text_encoder_dtype else (
        torch.bfloat16 if te_dev.type == "cuda" else None  # None keeps the stored dtype (bf16 for the release)
    )
    if path is None:
        from ..bundled import bundled_model_path

        path = bundled_model_path()
    files = resolve_files(path, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
    lora_files = []
    if loras:  # a missing or non-LoRA file, or a bad scale, should fail before minutes of loading weights
        from ..training.lora import check_lora_scale

        lora_files = [(read_lora(p), check_lora_scale(s)) for p, s in loras]
    layout = files.expected_layout
    # Each model loads straight to where it rests (CPU when offloading) to avoid a transient copy.
    rest = torch.device("cpu") if offload else dev
    dit = load_dit(files.dit, config_path=files.dit_config, device=rest, dtype=dt, expected_layout=layout)
    vae_model = load_vae(files.vae, config_path=files.vae_config, device=rest,
                         dtype=resolve_dtype(vae_dtype, dev), expected_layout=layout)
    te = load_text_encoder(files.text_encoder, files.tokenizer, config_path=files.text_encoder_config,
                           device=torch.device("cpu") if offload else te_dev, dtype=te_dt,
                           text_len=dit.config.text_len, expected_layout=layout)
    variant = variant_for(dit.config)
    log.info("loaded %s (%s layout, variant %s) on %s/%s", files.root, files.layout,
             variant.name if variant else "custom", dev, dt)
    pipe = WanPipeline(dit, vae_model, te, device=dev, dtype=dt, text_encoder_device=te_dev, offload=offload,
                       variant=variant, source=str(Path(path)), defaults=read_sample_defaults(files.root))
    for lora, scale in lora_files:
        pipe.load_lora(lora, scale)
    return pipe
