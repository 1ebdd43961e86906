"""Flow-matching training of the Wan DiT through a staged curriculum (``openwan train``).

One step: clips -> Wan-VAE (frozen) latents x₀ and captions -> umT5 (frozen) context, both cached to
disk when the dataset asks for it; σ from the configured distribution; x_σ = (1−σ)x₀ + σε; the DiT
predicts ε − x₀; MSE; AdamW with clipping; EMA. Parallelism (FSDP2, Ulysses context parallel) is
applied to the model from outside by :mod:`openwan.distributed`. Every piece of randomness of step s
comes from generators seeded by (seed, s, rank), and the data position is saved with the weights, so a
resumed run repeats the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..checkpoint.io import write_text_atomic
from ..checkpoint.loader import load_dit, load_text_encoder, load_vae
from ..configs import DiTConfig
from ..data.dataset import SkipReport
from ..environment import record_environment
from ..errors import InputError, NumericalError
from ..pipelines.loading import resolve_files
from .checkpoint import CheckpointManager, rng_state, set_rng_state
from .config import TrainConfig
from .data_mixture import StageData, load_entries, rng_for
from .flow_matching import flow_matching_loss, latent_mask, model_timesteps, noisy_latents, sample_sigmas
from .latent_cache import LatentCache, clips_fingerprint, fill_cache, find_donors, tensors_fingerprint
from .logger import MetricsLogger
from .optim import EMA, build_optimizer, set_lr, stage_lr
from .torch_compile import require_torch_compile

log = logging.getLogger(__name__)

StepCallback = Callable[["StepInfo"], None]


@dataclass
class StepInfo:
    """What a callback sees after each optimizer step."""

    step: int  # global steps done (1-based after the first step)
    stage: str
    loss: float
    lr: float
    grad_norm: float


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)  # this process's losses, one per step it ran
    skipped: str = ""  # summary of skipped input files
    export_dir: Path | None = None


# --- set-up ----------------------------------------------------------------------------------------

def build_dit(cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The trainable DiT (fp32 master weights): from the base checkpoint, or freshly initialised."""
    from ..checkpoint.loader import dit_config_from_file
    from ..models.dit import WanDiT

    files = resolve_files(cfg.model.base)
    if cfg.model.init == "base":
        if cfg.model.dit:
            raise InputError(f"{cfg.source}: model.dit overrides need model.init = 'random'")
        dit = load_dit(files.dit, config_path=files.dit_config, device=device, dtype=torch.float32)
    else:
        base_cfg = dit_config_from_file(files.dit_config) if files.dit_config else DiTConfig()
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.dit.items()}
        torch.manual_seed(cfg.run.seed)  # identical init on every rank
        with torch.device(device):
            dit = WanDiT(dataclasses.replace(base_cfg, **overrides))
    dit.train().requires_grad_(True)
    dit.gradient_checkpointing = cfg.model.gradient_checkpointing
    if cfg.model.lora is not None:
        from .lora import LoRAConfig, add_lora

        lo = cfg.model.lora
        dit = add_lora(dit, LoRAConfig(rank=lo.rank, alpha=lo.alpha, dropout=lo.dropout, targets=tuple(lo.targets)))
    return dit


def build_frozen(cfg: TrainConfig, device: torch.device, text_len: int) -> tuple[nn.Module, nn.Module]:
    files = resolve_files(cfg.model.base)
    layout = files.expected_layout
    vae = load_vae(files.vae, config_path=files.vae_config, device=device, dtype=torch.float32, expected_layout=layout)
    te = load_text_encoder(files.text_encoder, files.tokenizer, config_path=files.text_encoder_config,
                           device=device, dtype=torch.float32, text_len=text_len, expected_layout=layout)
    return vae, te


class _ModelState:
    """DCP ``Stateful`` of the model + optimizer; FSDP2 DTensors stay sharded in the checkpoint."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, frozen: bool = False) -> None:
        # frozen=True also saves frozen parameters (a VAE whose encoder is kept: export reads the whole
        # model from the checkpoint); by default they are left out, as for LoRA's frozen base
        self.model, self.optimizer, self.frozen = model, optimizer, frozen

    def state_dict(self) -> dict[str, Any]:
        trainable_only = StateDictOptions(ignore_frozen_params=True)
        model_opts = StateDictOptions(ignore_frozen_params=not self.frozen)
        return {"model": get_model_state_dict(self.model, options=model_opts),
                "optim": get_optimizer_state_dict(self.model, self.optimizer, options=trainable_only)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        opts = StateDictOptions(ignore_frozen_params=True, strict=False)
        set_model_state_dict(self.model, state["model"], options=opts)
        set_optimizer_state_dict(self.model, self.optimizer, state["optim"], options=opts)


class _EMAState:
    def __init__(self, ema: EMA) -> None:
        self.ema = ema

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)


# --- the trainer -----------------------------------------------------------------------------------

class Trainer:
    """The task-independent loop: stages, data mixing, logging, checkpoints, resume, skip reports.
    Subclasses build the models (``__init__``) and define ``train_step``, the checkpointed state and
    the final export."""

    def __init__(self, cfg: TrainConfig, *, callbacks: list[StepCallback] | None = None, num_workers: int = 0) -> None:
        from ..distributed import build_mesh, init_distributed

        self.cfg = cfg
        self.callbacks = list(callbacks or [])
        self.num_workers = num_workers
        self.env = init_distributed(None if cfg.run.device == "auto" else cfg.run.device)
        self.device = self.env.device
        world, cp = self.env.world_size, cfg.parallel.cp
        if world % cp:
            raise InputError(f"{cfg.source}: parallel.cp = {cp} does not divide the world size {world}")
        self.dp_size, self.dp_rank = world // cp, self.env.rank // cp
        self.mesh = build_mesh(self.env, dp=self.dp_size, cp=cp)
        self.is_main = self.env.rank == 0
        self.out = Path(cfg.run.output_dir)
        self._check_output()
        self.ckpt = CheckpointManager(self.out / "checkpoints", keep=cfg.checkpoint.keep)
        self.datasets = {d.name: d for d in cfg.datasets}
        self.caches: dict[str, LatentCache] = {}
        self.step = 0
        self.stage_index = 0
        self.step_in_stage = 0
        self.data_state: dict[str, int] = {}
        self.skips = SkipReport()  # files skipped so far, over all stages
        self.step_logs: dict[str, float] = {}  # a task's extra per-step metrics (e.g. the VAE's loss terms)

    # -- what a task defines ----------------------------------------------------------------------------
    def shared_state(self) -> dict[str, Any]:
        """DCP-checkpointed state (models, optimizers, EMA)."""
        raise NotImplementedError

    def train_step(self, src, batch, lr: float) -> tuple[float, float]:
        """One optimizer step on ``batch``; returns (loss, grad norm)."""
        raise NotImplementedError

    def start_stage(self, index: int) -> None:
        """Called before each stage runs (also on resume into it)."""

    @property
    def reads_masks(self) -> bool:
        """Whether the task's datasets read the manifests' mask videos (``Batch.mask``)."""
        return False

    def prepare_caches(self, data: StageData) -> None:
        """Pre-encode what the stage's cached datasets need (DiT training)."""

    def write_configs(self) -> None:
        """Files next to the checkpoints that export needs (rank 0)."""
        write_text_atomic(self.out / "train_config.json", json.dumps(self.cfg.to_dict(), indent=2) + "\n")

    def export_final(self) -> Path:
        from .export import export_checkpoint

        return export_checkpoint(self.out, self.out / "final")

    def write_samples(self, stage) -> None:
        """Sample outputs every ``logging.sample_every`` steps (tasks that can)."""

    def _check_output(self) -> None:
        if self.is_main:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                probe = self.out / ".write-test"
                probe.write_text("ok")
                probe.unlink()
            except OSError as e:
                raise InputError(f"output_dir {self.out} is not writable: {e}") from e

    # -- state ----------------------------------------------------------------------------------------
    def _rank_state(self, data: StageData | None) -> dict[str, Any]:
        return {"step": self.step, "stage_index": self.stage_index, "step_in_stage": self.step_in_stage,
                "data": data.state_dict() if data is not None else {}, "rng": rng_state(),
                "skips": self._skips_so_far(data).state_dict()}

    def _skips_so_far(self, data: StageData | None) -> SkipReport:
        report = SkipReport()
        report.merge(self.skips)
        if data is not None:
            report.merge(data.skip_report())
        return report

    def save(self, data: StageData | None) -> Path:
        path = self.ckpt.save(self.step, self.shared_state(), self._rank_state(data))
        if self.is_main:
            self.write_configs()
        return path

    def resume(self) -> Path | None:
        latest = self.ckpt.latest() if self.cfg.checkpoint.resume else None
        if latest is None:
            return None
        state = self.ckpt.load(latest, self.shared_state())
        self.step, self.stage_index = int(state["step"]), int(state["stage_index"])
        self.step_in_stage = int(state["step_in_stage"])
        self.data_state = dict(state["data"])
        if state.get("skips"):
            self.skips.load_state_dict(state["skips"])
        set_rng_state(state["rng"])
        return latest

    def _all_ranks_have(self, ok: bool) -> bool:
        if self.env.world_size == 1:
            return ok
        t = torch.tensor([int(ok)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def _mean_over_ranks(self, value: float) -> float:
        if self.env.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.env.world_size

    # -- the loop -------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        resumed = self.resume()
        if self.is_main:  # one line per (re)start: runs of one config differ when libraries or threads do
            record_environment(self.out / "environment.jsonl", config=str(cfg.source), task=cfg.run.task,
                               start_step=self.step, world_size=self.env.world_size)
        logger = MetricsLogger(self.out, total_steps=cfg.total_steps, start_step=self.step, enabled=self.is_main,
                               progress=cfg.logging.progress, tensorboard=cfg.logging.tensorboard)
        if resumed is not None:
            logger.message(f"resumed from {resumed} (step {self.step})")
        result = TrainResult(self.out, self.step)
        try:
            data = None
            for si in range(self.stage_index, len(cfg.stages)):
                stage = cfg.stages[si]
                if si != self.stage_index:
                    self.stage_index, self.step_in_stage, self.data_state = si, 0, {}
                self.start_stage(si)
                data = StageData(stage, si, self.datasets, seed=cfg.run.seed, dp_rank=self.dp_rank,
                                 dp_size=self.dp_size, num_workers=self.num_workers, caches=self.caches,
                                 masks=self.reads_masks)
                self.prepare_caches(data)
                data.load_state_dict(self.data_state)
                tic, samples = time.perf_counter(), 0
                since_record = (tic, 0)  # (time, samples) at the last metrics row: the recent rate shows drift
                while self.step_in_stage < stage.steps:
                    lr = stage_lr(stage, cfg.optim.lr, self.step_in_stage)
                    src, batch = data.next_batch(self.step_in_stage)
                    if not self._all_ranks_have(batch.video is not None):
                        continue  # some rank's clips were all unreadable (counted): every rank draws again
                    loss, grad_norm = self.train_step(src, batch, lr)
                    self.step += 1
                    self.step_in_stage += 1
                    samples += batch.video.shape[0] * self.dp_size
                    result.losses.append(loss)
                    info = StepInfo(self.step, stage.name, loss, lr, grad_norm)
                    throughput = samples / max(1e-9, time.perf_counter() - tic)
                    logger.step(self.step, {"loss": loss, "lr": lr, "samples/s": throughput})
                    if self.step % cfg.logging.every == 0 or self.step_in_stage == stage.steps:
                        now = time.perf_counter()
                        recent = (samples - since_record[1]) / max(1e-9, now - since_record[0])
                        since_record = (now, samples)
                        logger.record(self.step, {"stage": stage.name, "loss": self._mean_over_ranks(loss),
                                                  "lr": lr, "grad_norm": grad_norm, "samples_per_s": throughput,
                                                  "recent_samples_per_s": recent,
                                                  "skipped_files": data.skip_report().count, **self.step_logs})
                    if self.step % cfg.checkpoint.every == 0 or self.step_in_stage == stage.steps:
                        self.save(data)
                    if cfg.logging.sample_every and self.step % cfg.logging.sample_every == 0:
                        self.write_samples(stage)
                    for cb in self.callbacks:
                        cb(info)
                self.skips = self._skips_so_far(data)
            result.steps = self.step
            if self.skips.count:
                result.skipped = self.skips.summary()
                logger.message(result.skipped)
            if self.is_main:
                result.export_dir = self.export_final()
            if self.env.world_size > 1:
                dist.barrier()
        finally:
            logger.close()
        return result


class DiTTrainer(Trainer):
    """Flow-matching training of the DiT (full or LoRA) with frozen VAE and umT5."""

    def __init__(self, cfg: TrainConfig, *, callbacks: list[StepCallback] | None = None, num_workers: int = 0) -> None:
        super().__init__(cfg, callbacks=callbacks, num_workers=num_workers)
        self.dit = build_dit(cfg, self.device)
        self.dit_config: DiTConfig = self.dit.config
        self.vae, self.text_encoder = build_frozen(cfg, self.device, self.dit_config.text_len)
        self._parallelize()
        self.train_forward = self._compiled(self.dit) if cfg.run.compile else self.dit
        self.optimizer = build_optimizer(self.dit, cfg.optim, cfg.optim.lr)
        self.ema = EMA(self.dit, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
        self.trainable = [p for p in self.dit.parameters() if p.requires_grad]
        self.caches = {d.name: LatentCache(self.out / "cache" / d.name) for d in cfg.datasets if d.cache}
        self.stage_flow = cfg.flow  # [flow] with the current stage's σ distribution (start_stage)

    def start_stage(self, index: int) -> None:
        self.stage_flow = self.cfg.stages[index].flow.apply(self.cfg.flow)

    def _parallelize(self) -> None:
        cfg = self.cfg
        if cfg.parallel.cp > 1:
            from ..distributed import apply_context_parallel

            apply_context_parallel(self.dit, self.mesh["cp"].get_group())
        if self.env.world_size > 1 and cfg.parallel.fsdp:
            from ..distributed import apply_fsdp

            shard_mesh = self.mesh._flatten("dp_cp") if cfg.parallel.cp > 1 else self.mesh["dp"]
            apply_fsdp(self.dit, shard_mesh, reshard_after_forward=cfg.parallel.reshard_after_forward)

    def _compiled(self, dit: nn.Module) -> nn.Module:
        """The DiT behind torch.compile, sharing its parameters; only training steps call it, so samples,
        checkpoints and the export see the plain module (same state-dict keys, no recompiles)."""
        if self.env.world_size > 1:
            raise InputError("run.compile supports one process only for now; set run.compile = false "
                             "for torchrun (FSDP or context-parallel) runs")
        require_torch_compile(self.device, self.cfg.source)  # before the latent caching, not at step 1
        return torch.compile(dit)

    def shared_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"train": _ModelState(self.dit, self.optimizer)}
        if self.ema is not None:
            state["ema"] = _EMAState(self.ema)
        return state

    def write_configs(self) -> None:
        super().write_configs()
        write_text_atomic(self.out / "dit_config.json", json.dumps(self.dit_config.to_dict(), indent=2) + "\n")

    # -- one step -------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, captions: list[str]) -> list[torch.Tensor]:
        """umT5 embeddings, each trimmed to its prompt's tokens [n_i, d]."""
        context, lengths = self.text_encoder.encode(captions)
        return [c[:n].float() for c, n in zip(context, lengths.tolist())]

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, F, H, W] in [-1, 1] -> normalised latent means [B, 16, F', H', W']."""
        mu, _ = self.vae.encode_distribution(video.to(self.device))
        return self.vae.normalize(mu)

    def _context(self, captions: list[str], g: torch.Generator, cache: LatentCache | None) -> torch.Tensor:
        """[B, text_len, d] zero-padded context, with text dropout for classifier-free guidance.

        Padded to the DiT's text_len here, as its forward would do anyway, so every batch has one shape:
        a compiled forward (run.compile) would otherwise recompile for each new longest caption."""
        drop = torch.rand(len(captions), generator=g) < self.cfg.flow.text_dropout
        prompts = [self.cfg.flow.dropout_prompt if d else c for c, d in zip(captions, drop.tolist())]
        embs: list[torch.Tensor | None] = [cache.get_text(p) if cache else None for p in prompts]
        missing = [p for p, e in zip(prompts, embs) if e is None]
        fresh = iter(self.encode_text(missing) if missing else [])
        embs = [e if e is not None else next(fresh) for e in embs]
        width = self.dit_config.text_len
        return torch.stack([torch.nn.functional.pad(e, (0, 0, 0, width - e.shape[0])) for e in embs]).to(self.device)

    @functools.cached_property
    def encoders_fingerprint(self) -> dict[str, Any]:
        """What cached latents and text embeddings depend on besides the clips (see LatentCache.claim)."""
        tok = self.text_encoder.tokenizer
        vocab = json.dumps(sorted(tok.get_vocab().items()), ensure_ascii=False).encode()
        return {"vae": tensors_fingerprint(self.vae.state_dict()),
                "latent_statistics": [list(self.vae.config.latents_mean), list(self.vae.config.latents_std)],
                "text_encoder": tensors_fingerprint(self.text_encoder.state_dict()),
                "tokenizer": hashlib.sha1(vocab).hexdigest()}

    def prepare_caches(self, data: StageData) -> None:
        """Encode the cached datasets of a stage before it starts (each rank a share, then all wait)."""
        for src in data.sources:
            if src.cache is None:
                continue
            masks = src.dataset.masks
            source = {**self.encoders_fingerprint, "clips": clips_fingerprint(src.dataset.entries, masks),
                      "fps": src.dataset.fps, **({"masks": True} if masks else {})}
            if self.is_main:
                src.cache.claim(source)
            if self.env.world_size > 1:
                dist.barrier()
                src.cache.claim(source, write=False)
            n = fill_cache(src.dataset, src.cache, encode_video=self.encode_video, encode_text=self.encode_text,
                           encode_mask=self.latent_mask if masks else None, rank=self.env.rank,
                           world_size=self.env.world_size,
                           progress=self.is_main and self.cfg.logging.progress, desc=f"cache {src.name}",
                           donors=functools.partial(self._cache_donors, src.name, source, masks))
            if self.env.world_size > 1:
                dist.barrier()
            log.info("cached %d clips of %s", n, src.name)
        if self.cfg.flow.text_dropout > 0:
            for src in data.sources:
                empty = self.cfg.flow.dropout_prompt
                if src.cache is not None and not src.cache.has_text(empty) and self.is_main:
                    src.cache.put_text(empty, self.encode_text([empty])[0])
            if self.env.world_size > 1:
                dist.barrier()

    def _cache_donors(self, name: str, source: dict[str, Any], masks: bool) -> dict[tuple, tuple[LatentCache, int]]:
        """Clips the run's other caches hold, encoded like dataset ``name``'s would be (:func:`find_donors`)."""
        others = [(self.caches[d.name], load_entries(d)) for d in self.cfg.datasets
                  if d.name != name and d.name in self.caches]
        return find_donors(source, masks, others)

    @property
    def reads_masks(self) -> bool:
        return self.cfg.flow.mask_weight != 1.0 or any(d.mask_weight not in (None, 1.0) for d in self.cfg.datasets)

    def latent_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Pixel mask [B, 1, F, H, W] -> the VAE's latent grid [B, 1, F', H', W']."""
        return latent_mask(mask, self.vae.temporal_stride, self.vae.spatial_stride)

    def train_step(self, src, batch, lr: float) -> tuple[float, float]:
        cfg = self.cfg
        set_lr(self.optimizer, lr)
        x0 = batch.video.to(self.device) if src.cache is not None else self.encode_video(batch.video)
        weight = None
        mask_weight = cfg.flow.mask_weight if src.mask_weight is None else src.mask_weight
        if mask_weight != 1.0:
            mask = batch.mask if src.cache is not None else self.latent_mask(batch.mask)
            weight = 1.0 + (mask_weight - 1.0) * mask.to(self.device)
        g = rng_for(cfg.run.seed, self.step, self.dp_rank)  # same on the ranks of a context-parallel group
        context = self._context(batch.captions, g, src.cache)
        sigma = sample_sigmas(x0.shape[0], src.noise.apply(self.stage_flow), g)
        noise = torch.randn(x0.shape, generator=g).to(self.device)
        x_t, target = noisy_latents(x0, noise, sigma.to(self.device))
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.run.precision == "bf16"
                    else contextlib.nullcontext())
        offload = (torch.autograd.graph.save_on_cpu(pin_memory=self.device.type == "cuda")
                   if cfg.model.activation_offload else contextlib.nullcontext())
        with autocast, offload:
            pred = self.train_forward(x_t, model_timesteps(sigma).to(self.device), context)
        loss = flow_matching_loss(pred, target, weight)
        if weight is not None:  # the plain MSE too, comparable with unweighted runs
            self.step_logs["mse"] = flow_matching_loss(pred.detach(), target).item()
        if not torch.isfinite(loss):
            raise NumericalError(f"loss is {loss.item()} at step {self.step + 1} (stage {self.stage_index}); "
                                 "lower the learning rate or check the data")
        loss.backward()
        if cfg.parallel.cp > 1 and not (self.env.world_size > 1 and cfg.parallel.fsdp):
            from ..distributed import average_gradients

            average_gradients(self.dit, self.mesh["cp"].get_group())
        if cfg.optim.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.optim.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.trainable if p.grad is not None])
        if hasattr(grad_norm, "full_tensor"):  # DTensor under FSDP
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        return loss.item(), float(grad_norm)

    # -- samples --------------------------------------------------------------------------------------
    def write_samples(self, stage) -> None:
        """Generate the configured prompts with the live weights; every rank runs (FSDP/CP need all),
        rank 0 writes ``samples/step-N/k.mp4``."""
        from ..data.buckets import parse_bucket
        from ..pipelines.text_to_video import WanPipeline

        lg = self.cfg.logging
        size = parse_bucket(lg.sample_size or stage.buckets[0])
        pipe = WanPipeline(self.dit, self.vae, self.text_encoder, device=self.device, dtype=torch.float32,
                           source=f"training step {self.step}")
        folder = self.out / "samples" / f"step-{self.step:08d}"
        self.dit.eval()
        try:
            for k, prompt in enumerate(lg.sample_prompts):
                out = folder / (f"{k:02d}.mp4" if size.frames > 1 else f"{k:02d}.png")
                pipe.generate(prompt, width=size.width, height=size.height, frames=size.frames,
                              steps=lg.sample_steps, guidance=lg.sample_guidance, seed=lg.sample_seed + k,
                              negative_prompt=self.cfg.flow.dropout_prompt, progress=False,
                              output=out if self.is_main else None)
        finally:
            self.dit.train()


def train(cfg: TrainConfig, *, callbacks: list[StepCallback] | None = None, num_workers: int = 0) -> TrainResult:
    """Run (or resume) the training described by ``cfg``; the Python twin of ``openwan train``."""
    if cfg.run.task == "vae":
        from .vae_trainer import VAETrainer

        return VAETrainer(cfg, callbacks=callbacks, num_workers=num_workers).run()
    return DiTTrainer(cfg, callbacks=callbacks, num_workers=num_workers).run()
