"""``openwan export``: a training checkpoint -> an inference checkpoint that ``openwan generate`` loads.

The DiT comes from the newest complete (or a chosen) DCP checkpoint of a run — its EMA weights when
the run kept an EMA, unless ``use_ema=False`` — and is written in the official layout together with
the VAE, umT5 and tokenizer of the run's base checkpoint. A LoRA run exports its adapter file (in the
configured key naming) and, with ``merge=True``, a full checkpoint with the adapter folded in.
Loading needs no process group: DCP reads the shards of any world size into one process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

from ..checkpoint.convert import read_official_components, save_official
from ..configs import DiTConfig
from ..errors import CheckpointError, InputError
from ..pipelines.loading import read_sample_defaults, resolve_files, write_sample_config
from .checkpoint import CheckpointManager, quiet_single_process, step_dir_name
from .config import config_from_dict


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} not found: is {path.parent} an `openwan train` output_dir?")
    return json.loads(path.read_text(encoding="utf-8"))


def load_trained_dit(run_dir: str | os.PathLike, *, step: int | None = None, use_ema: bool = True):
    """(DiT with the trained weights, its TrainConfig, checkpoint folder) from a run's output_dir."""
    from ..models.dit import WanDiT

    run = Path(run_dir)
    cfg = config_from_dict(_read_json(run / "train_config.json"), source=str(run / "train_config.json"))
    dit_cfg = DiTConfig.from_dict(_read_json(run / "dit_config.json"))
    manager = CheckpointManager(run / "checkpoints")
    if step is None:
        ckpt = manager.latest()
        if ckpt is None:
            raise CheckpointError(f"{run / 'checkpoints'} has no complete checkpoint to export")
    else:
        ckpt = run / "checkpoints" / step_dir_name(step)
        if not (ckpt / "COMPLETE").is_file():
            raise CheckpointError(f"no complete checkpoint for step {step} in {run / 'checkpoints'}")
    model = WanDiT(dit_cfg)
    if cfg.model.lora is not None:
        from .lora import LoRAConfig, add_lora

        lo = cfg.model.lora
        model = add_lora(model, LoRAConfig(rank=lo.rank, alpha=lo.alpha, dropout=lo.dropout,
                                           targets=tuple(lo.targets)))
        _load_base_weights(model, cfg)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    has_ema = cfg.optim.ema_decay > 0
    if use_ema and has_ema:
        state = {"ema": {n: torch.empty_like(p) for n, p in trainable.items()}}
        with quiet_single_process():
            dcp.load(state, checkpoint_id=ckpt, no_dist=True)
        weights = state["ema"]
    else:
        state = {"train": {"model": {n: torch.empty_like(p) for n, p in trainable.items()}}}
        with quiet_single_process():
            dcp.load(state, checkpoint_id=ckpt, no_dist=True)
        weights = state["train"]["model"]
    with torch.no_grad():
        for n, p in trainable.items():
            p.copy_(weights[n])
    return model.eval().requires_grad_(False), cfg, ckpt


def _load_base_weights(model: torch.nn.Module, cfg) -> None:
    """A LoRA run trains adapters only: the frozen base weights come from the base checkpoint."""
    from ..checkpoint.loader import load_dit

    files = resolve_files(cfg.model.base)
    base = load_dit(files.dit, config_path=files.dit_config, dtype=torch.float32)
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, t in base.state_dict().items():
            target = own.get(name)
            if target is None:  # a LoRA-wrapped Linear keeps its weights under base_layer
                target = own.get(name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias"))
            if target is None:
                raise CheckpointError(f"base weight {name} of {files.dit} has no place in the LoRA model")
            target.copy_(t)


def export_checkpoint(run_dir: str | os.PathLike, output: str | os.PathLike, *, step: int | None = None,
                      use_ema: bool = True, merge: bool = False) -> Path:
    """Write the run's trained model as an official-layout checkpoint (or a LoRA file) at ``output``."""
    train_cfg = _read_json(Path(run_dir) / "train_config.json")
    if train_cfg.get("run", {}).get("task") == "vae":
        from .vae_trainer import export_vae_run

        return export_vae_run(run_dir, output, step=step)
    model, cfg, ckpt = load_trained_dit(run_dir, step=step, use_ema=use_ema)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise InputError(f"export output {out} exists and is not a folder")
    files = resolve_files(cfg.model.base)
    if cfg.model.lora is not None:
        from .lora import save_lora

        out.mkdir(parents=True, exist_ok=True)
        lora_path = save_lora(model, out / "lora.safetensors", naming=cfg.model.lora.naming,
                              metadata={"base": cfg.model.base, "checkpoint": str(ckpt)})
        if not merge:
            return lora_path
        from peft.tuners.tuners_utils import BaseTunerLayer

        for m in model.modules():
            if isinstance(m, BaseTunerLayer):
                m.merge()
        sd = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if "lora_" not in k}
    else:
        sd = model.state_dict()
    parts = read_official_components(files)
    save_official(out, dit={k: v.contiguous() for k, v in sd.items()}, dit_config=model.config,
                  vae=parts["vae"], t5=parts["t5"], tokenizer=files.tokenizer, vae_config=parts["vae_config"])
    # A fine-tune generates like its base: keep the base's native size, frames, steps and guidance, or a
    # small custom model would fall back to Wan's 832x480, 81 frames. A DiT trained from scratch is not
    # its base's model, so it gets none.
    base_defaults = read_sample_defaults(files.root) if cfg.model.init == "base" else None
    if base_defaults is not None:
        write_sample_config(out, base_defaults)
    return out
