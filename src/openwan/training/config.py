"""Typed training configuration, read from TOML or YAML.

A run is one file: ``[run]``, ``[model]``, ``[flow]``, ``[optim]``, ``[parallel]``, ``[checkpoint]``,
``[logging]``, a list of ``[[datasets]]`` and the curriculum as a list of ``[[stages]]`` — each stage
names its datasets and mix weights, resolution/frame buckets, batch size, learning rate and steps.
Every key is checked: an unknown key, a wrong type or a bad value raises :class:`InputError` naming
its path (``stages[1].batch_size``). ``--set stages.0.steps=2`` style overrides edit the raw tree
before validation, so they are checked the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError


@dataclass
class RunConfig:
    output_dir: str = "runs/openwan"  # checkpoints, metrics.jsonl, samples/, cache/ (relative to the config file)
    task: Literal["dit", "vae"] = "dit"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 = autocast of the trainable model; master weights fp32
    # torch.compile the DiT's training forward (task "dit", one process). The first step compiles (about a
    # minute on 2 CPU cores); after that a step of the shapes-world DiT is ~1.4x faster there (benchmarks/).
    compile: bool = False


@dataclass
class LoRASettings:
    rank: int = 16
    alpha: float | None = None  # defaults to rank
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: [
        "self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
        "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"])
    naming: Literal["diffusers", "comfy", "official"] = "diffusers"  # key naming of the saved LoRA file


@dataclass
class ModelConfig:
    # Checkpoint (official or diffusers layout) that supplies the VAE, text encoder and tokenizer, and the
    # DiT weights when init = "base".
    base: str = ""
    init: Literal["base", "random"] = "base"  # "random": fresh official init of a DiT shaped by `dit`
    dit: dict[str, Any] = field(default_factory=dict)  # DiTConfig fields for init = "random"
    vae: dict[str, Any] = field(default_factory=dict)  # VAEConfig fields for task = "vae", init = "random"
    gradient_checkpointing: bool = False
    activation_offload: bool = False  # keep saved activations in pinned CPU memory (report §4.4.1)
    lora: LoRASettings | None = None  # set -> train LoRA adapters only, base weights frozen


@dataclass
class FlowConfig:
    timesteps: Literal["uniform", "logit_normal"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 1.0  # σ -> shift·σ / (1 + (shift - 1)·σ): > 1 spends more steps at high noise
    text_dropout: float = 0.1  # probability of training on the empty prompt (classifier-free guidance)
    dropout_prompt: str = ""
    # Loss weight of latent cells a manifest's mask marks (1 = plain MSE). Small subjects on a large
    # background hold a few percent of the loss; weighting them makes their shape and motion matter.
    mask_weight: float = 1.0


@dataclass
class StageNoise:
    """A stage's own noise-level distribution; a field left out keeps ``[flow]``'s.

    A curriculum can spend its later steps where the remaining skill is learned: a clip's layout and
    motion are decided at high σ, so a stage may centre the logit-normal higher than the one before it.
    """

    timesteps: Literal["uniform", "logit_normal"] | None = None
    logit_mean: float | None = None
    logit_std: float | None = None
    shift: float | None = None

    def apply(self, flow: FlowConfig) -> FlowConfig:
        """``flow`` with this stage's fields in place of its own."""
        return dataclasses.replace(flow, **{k: v for k, v in dataclasses.asdict(self).items() if v is not None})


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.0  # 0 disables EMA


@dataclass
class DatasetConfig:
    name: str = ""
    manifest: str = ""
    cache: bool = False  # pre-encode latents and text embeddings once, to <output_dir>/cache/<name>
    min_quality: float | None = None
    min_motion: float | None = None
    # manifest field -> allowed values, e.g. { motion_label = ["moves left", "moves right"] }: a subset of
    # a manifest as its own dataset, to weigh it up in a stage's mixture
    where: dict[str, list[Any]] = field(default_factory=dict)
    # DiT: the subject cells' loss weight for this dataset's clips instead of flow.mask_weight. Below 1 it
    # weighs the background up, e.g. camera pans, which only the background shows
    mask_weight: float | None = None
    # DiT: this dataset's own noise levels on top of its stage's, e.g. { logit_mean = -0.5 } to train camera
    # pans where the wall is formed (low-middle σ) while the stage centres the rest at high σ
    flow: StageNoise = field(default_factory=StageNoise)


@dataclass
class StageConfig:
    name: str = ""
    steps: int = 0
    batch_size: int = 1
    buckets: list[str] = field(default_factory=lambda: ["256x256x17"])
    datasets: dict[str, float] = field(default_factory=dict)  # dataset name -> mix weight
    fps: float | None = 16.0  # frame sampling rate of clips; None = consecutive source frames
    lr: float | None = None  # peak LR of this stage (default optim.lr)
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the peak
    flow: StageNoise = field(default_factory=StageNoise)  # this stage's σ distribution (default: [flow]'s)


@dataclass
class ParallelConfig:
    cp: int = 1  # Ulysses context-parallel degree (sequence split across ranks)
    fsdp: bool = True  # shard parameters, grads and optimizer state (FSDP2) when world size > 1
    reshard_after_forward: bool = True


@dataclass
class CheckpointConfig:
    every: int = 500  # steps between checkpoints (also written at the end of every stage)
    keep: int = 2  # newest complete checkpoints kept
    resume: bool = True  # continue from the newest complete checkpoint in output_dir


@dataclass
class LoggingConfig:
    every: int = 10  # steps between metrics.jsonl records
    progress: bool = True
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed
    sample_every: int = 0  # steps between sample videos (0: none)
    sample_prompts: list[str] = field(default_factory=list)
    sample_size: str = ""  # "WxHxF"; default: the current stage's first bucket
    sample_steps: int = 20
    sample_guidance: float = 5.0
    sample_seed: int = 0


@dataclass
class VAETrainSettings:
    """Losses of the VAE task (see :mod:`openwan.training.vae_objective`)."""

    loss: dict[str, Any] = field(default_factory=dict)  # VAELossConfig fields
    disc_lr: float | None = None  # discriminator LR (default: the stage LR)
    # Train the decoder only (model.init = "base"): the encoder, and so every latent it makes, stays as it
    # was, so latent caches, latent statistics and a DiT trained on them stay valid with the new decoder.
    freeze_encoder: bool = False


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    vae: VAETrainSettings = field(default_factory=VAETrainSettings)
    datasets: list[DatasetConfig] = field(default_factory=list)
    stages: list[StageConfig] = field(default_factory=list)
    source: str = ""  # the config file, for messages (not a config key)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


# --- reading ---------------------------------------------------------------------------------------

def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override, validate. Relative paths in the file resolve against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            raw = yaml.safe_load(text) or {}
        else:
            raise InputError(f"{path}: config must be .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, ImportError) as e:
        raise InputError(f"{path}: cannot parse: {e}") from e
    except Exception as e:  # yaml.YAMLError, without importing yaml for TOML users
        if type(e).__module__.startswith("yaml"):
            raise InputError(f"{path}: cannot parse: {e}") from e
        raise
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the top level must be a table of sections")
    for item in overrides or []:
        apply_override(raw, item)
    cfg = config_from_dict(raw, source=str(path))
    _resolve_paths(cfg, path.parent)
    return cfg


def config_from_dict(raw: dict[str, Any], *, source: str = "<dict>") -> TrainConfig:
    cfg = _build(TrainConfig, raw, "", source)
    cfg.source = source
    validate(cfg)
    return cfg


def apply_override(raw: dict[str, Any], item: str) -> None:
    """``a.b.c=value`` (value parsed as a TOML literal, else taken as a string); list items by index."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise InputError(f"override {item!r} must look like section.key=value")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise InputError(f"override {item!r}: {'.'.join(parts[:i]) or 'list'} has no item {part}")
            if last:
                node[int(part)] = parsed
            else:
                node = node[int(part)]
        else:
            if last:
                node[part] = parsed
            else:
                node = node.setdefault(part, {})


def _path(prefix: str, key: str | int) -> str:
    return f"{prefix}[{key}]" if isinstance(key, int) else (f"{prefix}.{key}" if prefix else key)


def _build(cls: type, data: Any, where: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise InputError(f"{source}: {where or 'config'} must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(names)}"
            raise InputError(f"{source}: unknown key {_path(where, key)!r}{hint}")
        kwargs[key] = _coerce(hints[key], value, _path(where, key), source)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str, source: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(a, value, where, source)
            except InputError as e:
                errors.append(str(e))
        raise InputError(errors[0])
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    if origin is Literal:
        if value not in args:
            raise InputError(f"{source}: {where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"{source}: {where} must be a list, got {type(value).__name__}")
        return [_coerce(args[0], v, _path(where, i), source) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise InputError(f"{source}: {where} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(a, v, _path(where, i), source) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{source}: {where} must be a table, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, _path(where, k), source) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise InputError(f"{source}: {where} must be {tp.__name__}, got {value!r}")
    return value


def validate(cfg: TrainConfig) -> None:
    """Value checks that types cannot express; each message names the key."""
    from ..data.buckets import parse_bucket

    src = cfg.source

    def need(ok: bool, where: str, msg: str) -> None:
        if not ok:
            raise InputError(f"{src}: {where} {msg}")

    need(cfg.run.seed >= 0, "run.seed", "must be >= 0")
    noises = ([("flow", cfg.flow)] + [(f"stages[{i}].flow", s.flow) for i, s in enumerate(cfg.stages)]
              + [(f"datasets[{i}].flow", d.flow) for i, d in enumerate(cfg.datasets)])
    for where, noise in noises:
        need(noise.logit_std is None or noise.logit_std > 0, f"{where}.logit_std", "must be > 0")
        need(noise.shift is None or noise.shift > 0, f"{where}.shift", "must be > 0")
    need(0 <= cfg.flow.text_dropout <= 1, "flow.text_dropout", "must be in [0, 1]")
    need(math.isfinite(cfg.flow.mask_weight) and cfg.flow.mask_weight > 0, "flow.mask_weight",
         "must be a finite number > 0 (1 = unweighted)")
    need(cfg.flow.mask_weight == 1 or cfg.run.task == "dit", "flow.mask_weight", "is only for task = 'dit'")
    need(not cfg.run.compile or cfg.run.task == "dit", "run.compile",
         "is only for task = 'dit' (the VAE's oneDNN convolutions do not trace under torch.compile)")
    need(cfg.optim.lr > 0, "optim.lr", "must be > 0")
    need(cfg.optim.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 disables clipping)")
    need(0 <= cfg.optim.ema_decay < 1, "optim.ema_decay", "must be in [0, 1) (0 disables EMA)")
    need(cfg.parallel.cp >= 1, "parallel.cp", "must be >= 1")
    need(cfg.checkpoint.every >= 1, "checkpoint.every", "must be >= 1")
    need(cfg.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
    need(cfg.logging.every >= 1, "logging.every", "must be >= 1")
    need(cfg.logging.sample_every >= 0, "logging.sample_every", "must be >= 0")
    if cfg.logging.sample_every:
        need(bool(cfg.logging.sample_prompts), "logging.sample_prompts", "must list prompts when sample_every > 0")
    if cfg.logging.sample_size:
        parse_bucket(cfg.logging.sample_size)
    need(bool(cfg.model.base), "model.base",
         "must name a checkpoint folder (it supplies the VAE, text encoder and tokenizer)")
    if cfg.model.init == "random" and cfg.run.task == "dit":
        from ..configs import DiTConfig

        known = {f.name for f in dataclasses.fields(DiTConfig)}
        for k in cfg.model.dit:
            need(k in known, f"model.dit.{k}", f"is not a DiT config field ({', '.join(sorted(known))})")
    if cfg.run.task == "vae":
        from ..configs import VAEConfig
        from .vae_objective import VAELossConfig

        known = {f.name for f in dataclasses.fields(VAEConfig)}
        for k in cfg.model.vae:
            need(k in known, f"model.vae.{k}", f"is not a VAE config field ({', '.join(sorted(known))})")
        need(cfg.model.init == "random" or not cfg.model.vae, "model.vae", "overrides need model.init = 'random'")
        need(not cfg.vae.freeze_encoder or cfg.model.init == "base", "vae.freeze_encoder",
             "needs model.init = 'base' (a trained encoder to keep)")
        loss_fields = {f.name for f in dataclasses.fields(VAELossConfig)}
        for k in cfg.vae.loss:
            need(k in loss_fields, f"vae.loss.{k}", f"is not a VAE loss setting ({', '.join(sorted(loss_fields))})")
        for i, d in enumerate(cfg.datasets):
            need(not d.cache, f"datasets[{i}].cache", "caches DiT latents; VAE training reads pixels")
    if cfg.model.lora is not None:
        need(cfg.model.lora.rank >= 1, "model.lora.rank", "must be >= 1")
        need(cfg.run.task == "dit", "model.lora", "is only for task = 'dit'")
    names = [d.name for d in cfg.datasets]
    need(bool(names), "datasets", "must list at least one [[datasets]] entry")
    for i, d in enumerate(cfg.datasets):
        need(bool(d.name), f"datasets[{i}].name", "is required")
        need(bool(d.manifest), f"datasets[{i}].manifest", "is required")
        need(names.count(d.name) == 1, f"datasets[{i}].name", f"{d.name!r} is used twice")
        if d.mask_weight is not None:
            need(math.isfinite(d.mask_weight) and d.mask_weight > 0, f"datasets[{i}].mask_weight",
                 "must be a finite number > 0 (1 = unweighted)")
            need(cfg.run.task == "dit", f"datasets[{i}].mask_weight", "is only for task = 'dit'")
        need(d.flow == StageNoise() or cfg.run.task == "dit", f"datasets[{i}].flow", "is only for task = 'dit'")
    need(bool(cfg.stages), "stages", "must list at least one [[stages]] entry")
    for i, s in enumerate(cfg.stages):
        at = f"stages[{i}]"
        need(s.steps >= 1, f"{at}.steps", "must be >= 1")
        need(s.batch_size >= 1, f"{at}.batch_size", "must be >= 1")
        need(bool(s.buckets), f"{at}.buckets", "must list at least one bucket like '256x256x17'")
        for j, b in enumerate(s.buckets):
            try:
                parse_bucket(b)
            except InputError as e:
                raise InputError(f"{src}: {at}.buckets[{j}]: {e}") from e
        need(bool(s.datasets), f"{at}.datasets", "must map at least one dataset name to a mix weight")
        for name, w in s.datasets.items():
            need(name in names, f"{at}.datasets.{name}", f"is not a defined dataset ({', '.join(names)})")
            need(w > 0, f"{at}.datasets.{name}", "mix weight must be > 0")
        need(s.fps is None or s.fps > 0, f"{at}.fps", "must be > 0")
        need(s.lr is None or s.lr > 0, f"{at}.lr", "must be > 0")
        need(0 <= s.warmup_steps <= s.steps, f"{at}.warmup_steps", "must be in [0, steps]")
        need(0 <= s.min_lr_ratio <= 1, f"{at}.min_lr_ratio", "must be in [0, 1]")


def _resolve_paths(cfg: TrainConfig, root: Path) -> None:
    def resolve(p: str) -> str:
        return str(p if Path(p).is_absolute() else (root / p).resolve()) if p else p

    cfg.run.output_dir = resolve(cfg.run.output_dir)
    cfg.model.base = resolve(cfg.model.base)
    for d in cfg.datasets:
        d.manifest = resolve(d.manifest)
