"""Wan-VAE training (``task = "vae"``): image stage -> inflation to the 3D causal VAE -> video stages.

With ``model.init = "random"``, leading stages whose buckets are all single frames train the 2D
:class:`~openwan.models.image_vae.ImageVAE`; the first stage with video buckets inflates it into the
3D causal :class:`~openwan.models.vae.WanVAE` (single-frame output unchanged, see
:mod:`openwan.training.vae_inflate`) and trains on clips. ``init = "base"`` fine-tunes the base
checkpoint's Wan-VAE directly. Losses (L1, KL, optional LPIPS, optional GAN with a 3D patch
discriminator from ``vae.loss.gan_start_step``) come from :class:`VAEObjective`.

Runs in one process (the VAE is small; multi-GPU VAE training is not wired up).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint.io import write_pth, write_text_atomic
from ..checkpoint.loader import load_vae, vae_config_from_file
from ..configs import VAEConfig
from ..data.buckets import parse_bucket
from ..errors import InputError
from ..models.image_vae import ImageVAE
from ..models.vae import WanVAE
from ..pipelines.loading import resolve_files
from .config import TrainConfig
from .data_mixture import rng_for
from .optim import build_optimizer, set_lr
from .trainer import StepCallback, Trainer, _ModelState
from .vae_inflate import inflate_image_vae
from .vae_objective import VAELossConfig, VAEObjective


def stage_is_image(cfg: TrainConfig, index: int) -> bool:
    return all(parse_bucket(b).frames == 1 for b in cfg.stages[index].buckets)


def vae_kind(cfg: TrainConfig, stage_index: int) -> str:
    """"image" while a from-scratch run is still in its leading image-only stages, else "video"."""
    if cfg.model.init != "random":
        return "video"
    return "image" if all(stage_is_image(cfg, i) for i in range(stage_index + 1)) else "video"


def base_vae_config(cfg: TrainConfig) -> VAEConfig:
    from ..checkpoint.keymap_vae import vae_config_from_state_dict
    from ..checkpoint.loader import read_official_state_dict

    files = resolve_files(cfg.model.base)
    base = (vae_config_from_file(files.vae_config) if files.vae_config
            else vae_config_from_state_dict(read_official_state_dict(files.vae, "vae", files.expected_layout)))
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.vae.items()}
    return dataclasses.replace(base, **overrides)


class VAETrainer(Trainer):
    def __init__(self, cfg: TrainConfig, *, callbacks: list[StepCallback] | None = None, num_workers: int = 0) -> None:
        super().__init__(cfg, callbacks=callbacks, num_workers=num_workers)
        if self.env.world_size > 1:
            raise InputError("VAE training runs in one process; launch it without torchrun")
        self.loss_config = VAELossConfig.from_dict(dict(cfg.vae.loss))
        self.kind = ""
        self.objective: VAEObjective | None = None
        self.discriminator: nn.Module | None = None
        self._build(self._kind_at_start())

    def _kind_at_start(self) -> str:
        latest = self.ckpt.latest() if self.cfg.checkpoint.resume else None
        if latest is None:
            return vae_kind(self.cfg, 0)
        info = json.loads((latest / "vae_kind.json").read_text()) if (latest / "vae_kind.json").is_file() else {}
        return info.get("kind", vae_kind(self.cfg, 0))

    def _build(self, kind: str, vae: nn.Module | None = None) -> None:
        cfg = self.cfg
        if vae is None:
            if cfg.model.init == "base":
                files = resolve_files(cfg.model.base)
                vae = load_vae(files.vae, config_path=files.vae_config, device=self.device, dtype=torch.float32)
            else:
                torch.manual_seed(cfg.run.seed)
                with torch.device(self.device):
                    vae = ImageVAE(base_vae_config(cfg)) if kind == "image" else WanVAE(base_vae_config(cfg))
        vae.train().requires_grad_(True)
        if cfg.vae.freeze_encoder:
            for part in (vae.encoder, vae.conv1):  # conv1 maps encoder features to the latent moments
                part.requires_grad_(False)
        vae.gradient_checkpointing = cfg.model.gradient_checkpointing
        self.kind = kind
        self.objective = VAEObjective(vae, self.loss_config).to(self.device)
        if self.discriminator is not None:  # the discriminator carries over inflation
            self.objective.discriminator = self.discriminator
        self.discriminator = self.objective.discriminator
        self.optimizer = build_optimizer(vae, cfg.optim, cfg.optim.lr)
        self.disc_optimizer = (build_optimizer(self.discriminator, cfg.optim, cfg.optim.lr)
                               if self.discriminator is not None else None)

    @property
    def vae(self) -> nn.Module:
        return self.objective.vae

    def start_stage(self, index: int) -> None:
        kind = vae_kind(self.cfg, index)
        if kind == "video" and self.kind == "image":
            self._build("video", inflate_image_vae(self.vae))

    @property
    def reads_masks(self) -> bool:
        return self.objective.reads_masks

    def shared_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"vae": _ModelState(self.vae, self.optimizer, frozen=True)}
        if self.discriminator is not None:
            state["disc"] = _ModelState(self.discriminator, self.disc_optimizer)
        return state

    def save(self, data) -> Path:
        path = super().save(data)
        write_text_atomic(path / "vae_kind.json", json.dumps({"kind": self.kind}) + "\n")
        return path

    def train_step(self, src, batch, lr: float) -> tuple[float, float]:
        cfg = self.cfg
        set_lr(self.optimizer, lr)
        video = batch.video.to(self.device)
        g = rng_for(cfg.run.seed, self.step, 1)
        out = self.objective.generator_step(video, self.step, generator=g, mask=batch.mask)  # None unless read
        if not torch.isfinite(out.loss):
            from ..errors import NumericalError

            raise NumericalError(f"VAE loss is {out.loss.item()} at step {self.step + 1}; lower the learning rate")
        out.loss.backward()
        params = [p for p in self.vae.parameters() if p.grad is not None]
        grad_norm = (torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip) if cfg.optim.grad_clip > 0
                     else torch.nn.utils.get_total_norm([p.grad for p in params]))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        d_loss, d_logs = self.objective.discriminator_step(video, out.recon, self.step)
        self.step_logs = {k: v for k, v in {**out.logs, **d_logs}.items() if k != "loss"}
        if d_loss is not None:
            set_lr(self.disc_optimizer, cfg.vae.disc_lr or lr)
            d_loss.backward()
            self.disc_optimizer.step()
            self.disc_optimizer.zero_grad(set_to_none=True)
        return out.loss.item(), float(grad_norm)

    def write_configs(self) -> None:
        super().write_configs()
        write_text_atomic(self.out / "vae_config.json", json.dumps(self.vae.config.to_dict(), indent=2) + "\n")

    def export_final(self) -> Path:
        return export_vae_run(self.out, self.out / "final")


def load_trained_vae(run_dir: str | Path, ckpt: Path) -> WanVAE:
    """The run's VAE at checkpoint ``ckpt`` (an image-stage checkpoint is inflated)."""
    import torch.distributed.checkpoint as dcp

    from .checkpoint import quiet_single_process

    run = Path(run_dir)
    vcfg = VAEConfig(**{k: tuple(v) if isinstance(v, list) else v
                        for k, v in json.loads((run / "vae_config.json").read_text()).items()})
    kind = json.loads((ckpt / "vae_kind.json").read_text())["kind"]
    model = ImageVAE(vcfg) if kind == "image" else WanVAE(vcfg)
    state = {"vae": {"model": {n: torch.empty_like(p) for n, p in model.named_parameters()}}}
    with quiet_single_process():
        dcp.load(state, checkpoint_id=ckpt, no_dist=True)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(state["vae"]["model"][n])
    vae = inflate_image_vae(model) if kind == "image" else model
    return vae.eval().requires_grad_(False)


def export_vae_run(run_dir: str | Path, output: str | Path, *, step: int | None = None) -> Path:
    """Official-layout checkpoint with the trained VAE and the base checkpoint's DiT, umT5 and tokenizer."""
    from ..checkpoint.convert import read_official_components, save_official
    from .checkpoint import CheckpointManager, step_dir_name
    from .config import config_from_dict

    run = Path(run_dir)
    cfg = config_from_dict(json.loads((run / "train_config.json").read_text()), source=str(run))
    manager = CheckpointManager(run / "checkpoints")
    ckpt = manager.latest() if step is None else run / "checkpoints" / step_dir_name(step)
    if ckpt is None or not (ckpt / "COMPLETE").is_file():
        which = "" if step is None else f" for step {step}"
        raise InputError(f"{run / 'checkpoints'} has no complete checkpoint{which}")
    vae = load_trained_vae(run, ckpt)
    files = resolve_files(cfg.model.base)
    parts = read_official_components(files)
    out = save_official(output, dit=parts["dit"], dit_config=parts["dit_config"], vae=vae.state_dict(),
                        t5=parts["t5"], tokenizer=files.tokenizer, vae_config=vae.config)
    write_pth(vae.state_dict(), Path(output) / "vae.pth")
    return out
