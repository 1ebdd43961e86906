"""``openwan recipe``: build a complete small Wan model from nothing, step by step, with the training system.

A recipe file (``configs/shapes-world/recipe.toml``) names every step; each writes into
``<output_dir>/<step>`` and is skipped when its result is already there, so re-running the command
resumes (the two training steps also resume from their own checkpoints):

1. ``data``      render the synthetic world's train split (:mod:`openwan.data.synth_world`);
   ``data-<name>`` each ``[[extra_data]]`` set: more train-split clips with their own seed and a subset of
                 the world's motions and backgrounds, read only by the DiT datasets it names;
2. ``scaffold``  a tokenizer trained on the world's caption templates and a random umT5-architecture text
                 encoder, in the official layout;
   ``text``      that encoder trained to say what each caption states (:mod:`.caption_encoder`), the
                 stand-in for umT5's pretraining; frozen from then on (skipped when ``train_steps = 0``);
3. ``vae``       ``openwan train`` on the VAE config (image stage -> inflation -> video stage);
4. ``latents``   per-channel latent mean/std of the trained VAE over training clips, written to
                 ``vae_config.json`` so latents are normalised like Wan's;
   ``decoder``   optional (``decoder = "decoder.toml"``): ``openwan train`` on a decoder-only fine-tune of
                 that VAE (``vae.freeze_encoder = true``); the latents, so the statistics and the DiT, are
                 unchanged, and the final model takes its sharper decoder;
5. ``dit``       ``openwan train`` on the DiT config (latents and text embeddings cached once);
   ``dit-finetune`` optional (``dit_finetune = "...toml"``): ``openwan train`` continuing that DiT
                 (``model.init = "base"``) with its own objective, e.g. more steps on the motions at high
                 noise; it reads the DiT step's latent cache instead of encoding the clips again;
6. ``model``     the final official-layout checkpoint plus ``sample_config.json`` (native size, frames,
                 steps, shift, guidance) that ``openwan generate`` uses as its defaults.

Each invocation appends a line to ``<output_dir>/environment.jsonl``: library versions (PyAV's FFmpeg
included), the openwan commit and the machine (:mod:`openwan.environment`), since runs of the same config
on the same code can still differ when those do. The VAE and DiT steps' trainers add theirs (with the step
they start from) to ``vae/`` and ``dit/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..configs import SampleDefaults
from ..environment import record_environment
from ..errors import InputError, OpenWanError
from ..pipelines.loading import write_sample_config  # a custom checkpoint's sampling defaults
from ..validation import parse_size
from .config import _build, apply_override

if TYPE_CHECKING:
    from ..data.synth_world import SynthWorldConfig


@dataclass
class RecipeData:
    clips: int = 3000
    size: str = "64x64"  # WxH
    frames: int = 17
    fps: int = 16
    seed: int = 0
    backgrounds: list[str] = field(default_factory=list)  # [] = the world's default backgrounds
    pan_backgrounds: list[str] = field(default_factory=list)  # walls behind camera pans only; [] = backgrounds


@dataclass
class RecipeExtraData:
    """More train-split clips (size, frames and fps from [data]) for the DiT datasets named in ``datasets``."""

    name: str = ""
    clips: int = 0
    seed: int = 1
    backgrounds: list[str] = field(default_factory=list)  # [] = [data]'s walls (pan_backgrounds behind pans)
    motions: list[str] = field(default_factory=list)  # [] = every motion
    pan_speed: int = 0  # camera pans in whole px per frame; 0 = the world's default
    datasets: list[str] = field(default_factory=list)  # DiT [[datasets]] names that read these clips


@dataclass
class RecipeTokenizer:
    pieces: int = 160  # SentencePiece pieces; with the attribute words fixed the corpus supports < 180
    vocab_size: int = 384  # pieces + T5 sentinels: the text encoder's embedding rows


@dataclass
class RecipeTextEncoder:
    d_model: int = 128
    d_ff: int = 256
    num_heads: int = 4
    d_kv: int = 32
    num_layers: int = 2
    init_std: float = 0.2
    seed: int = 0
    # caption pretraining (the ``text`` step); 0 keeps the random encoder
    train_steps: int = 0
    train_batch: int = 128
    train_lr: float = 2e-3
    train_specs: int = 20000  # train-split clip specs whose captions (every paraphrase, en + zh) it sees


@dataclass
class Recipe:
    output_dir: str = "runs/recipe"  # relative to the recipe file
    vae: str = "vae.toml"  # training configs, relative to the recipe file
    dit: str = "dit.toml"
    decoder: str = ""  # optional decoder-only VAE fine-tune (vae.freeze_encoder = true); "" = none
    dit_finetune: str = ""  # optional second DiT run from the first one's weights (model.init = "base"); "" = none
    stats_clips: int = 256  # clips encoded for the latent mean/std
    data: RecipeData = field(default_factory=RecipeData)
    extra_data: list[RecipeExtraData] = field(default_factory=list)
    tokenizer: RecipeTokenizer = field(default_factory=RecipeTokenizer)
    text_encoder: RecipeTextEncoder = field(default_factory=RecipeTextEncoder)
    # the model's sample_config.json (what `openwan generate` uses by default), in that file's format
    sample: dict[str, Any] = field(default_factory=dict)
    vae_overrides: list[str] = field(default_factory=list)  # --set items for the VAE config
    dit_overrides: list[str] = field(default_factory=list)
    decoder_overrides: list[str] = field(default_factory=list)
    dit_finetune_overrides: list[str] = field(default_factory=list)
    source: str = ""


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe TOML; ``overrides`` are ``key=value`` items like ``data.clips=16``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"recipe file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: cannot parse: {e}") from e
    for item in overrides or []:
        apply_override(raw, item)
    recipe = _build(Recipe, raw, "", str(path))
    recipe.source = str(path)
    root = path.parent
    for name in ("output_dir", "vae", "dit", "decoder", "dit_finetune"):
        value = Path(getattr(recipe, name))
        if name in ("decoder", "dit_finetune") and not getattr(recipe, name):
            continue
        setattr(recipe, name, str(value if value.is_absolute() else (root / value).resolve()))
    _data_size(recipe)
    try:
        _world_config(recipe)  # a bad background fails here, not after hours of training
    except InputError as e:
        raise InputError(f"{path}: [data]: {e}") from None
    _check_extra_data_sets(recipe)
    sample_defaults(recipe)
    te = recipe.text_encoder
    if te.train_steps < 0 or te.train_batch < 1 or te.train_specs < 1 or te.train_lr <= 0:
        raise InputError(f"{path}: text_encoder.train_steps must be >= 0 and train_batch, train_specs, "
                         "train_lr positive")
    if recipe.tokenizer.vocab_size < recipe.tokenizer.pieces:
        raise InputError(f"{path}: tokenizer.vocab_size must be >= tokenizer.pieces")
    return recipe


def _data_size(recipe: Recipe) -> tuple[int, int]:
    try:
        return parse_size(recipe.data.size, example="64x64")
    except InputError as e:
        raise InputError(f"{recipe.source}: data.size: {e}") from None


def sample_defaults(recipe: Recipe) -> SampleDefaults:
    """The recipe's [sample] table, checked as the sample_config.json it becomes."""
    try:
        return SampleDefaults.from_file_dict(recipe.sample, f"{recipe.source}: [sample]")
    except (OpenWanError, TypeError) as e:
        raise InputError(f"{recipe.source}: [sample]: {e}") from None


def _log(msg: str) -> None:
    print(f"[recipe {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _world_config(recipe: Recipe, extra: RecipeExtraData | None = None) -> SynthWorldConfig:
    from ..data.synth_world import SynthWorldConfig

    w, h = _data_size(recipe)
    config = SynthWorldConfig(width=w, height=h, frames=recipe.data.frames, fps=recipe.data.fps,
                              num_clips=recipe.data.clips, seed=recipe.data.seed)
    if recipe.data.backgrounds:
        config = dataclasses.replace(config, backgrounds=tuple(recipe.data.backgrounds))
    if recipe.data.pan_backgrounds:
        config = dataclasses.replace(config, pan_backgrounds=tuple(recipe.data.pan_backgrounds))
    if extra is None:
        return config
    # an extra set that names its walls draws every clip over them; otherwise it keeps [data]'s
    walls = {"backgrounds": tuple(extra.backgrounds), "pan_backgrounds": None} if extra.backgrounds else {}
    return dataclasses.replace(config, num_clips=extra.clips, seed=extra.seed, held_out=None,
                               motions=tuple(extra.motions) or config.motions, pan_speed=extra.pan_speed, **walls)


def _check_extra_data_sets(recipe: Recipe) -> None:
    """Each ``[[extra_data]]`` set on its own, and no DiT dataset fed by two; whether the datasets it names
    exist is checked against the DiT configs when the recipe runs (``check_extra_data``)."""
    fed: dict[str, str] = {}
    names = [extra.name for extra in recipe.extra_data]
    for extra in recipe.extra_data:
        where = f"{recipe.source}: extra_data '{extra.name}'"
        if names.count(extra.name) > 1:
            raise InputError(f"{recipe.source}: extra_data name '{extra.name}' is used twice; each set renders "
                             "into its own data-<name> folder")
        if not extra.name or not extra.name.replace("-", "").replace("_", "").isalnum():
            raise InputError(f"{where}: name must be a non-empty word (letters, digits, - and _): it names the "
                             "data-<name> folder")
        if not extra.datasets:
            raise InputError(f"{where}: datasets must name the DiT [[datasets]] that read these clips")
        try:
            _world_config(recipe, extra)  # a bad background or motion fails here, not after the VAE
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        for name in extra.datasets:
            if name in fed:
                raise InputError(f"{recipe.source}: dataset '{name}' is fed by two extra_data sets, "
                                 f"'{fed[name]}' and '{extra.name}'; a dataset reads one manifest")
            fed[name] = extra.name


def build_data(recipe: Recipe, out: Path) -> Path:
    """Render the train split, unless it is there. Data from before synth-world wrote object masks (which
    the DiT's mask-weighted loss reads) is rendered again: the world is deterministic by seed, so the clips
    come out the same (up to H.264 encoding noise) and the steps trained on them stay valid."""
    from ..data.manifest import read_manifest
    from ..data.synth_world import generate_dataset

    manifest = out / "train.jsonl"
    config = _world_config(recipe)
    if manifest.is_file() and any(e.mask is None for e in read_manifest(manifest)):
        _log(f"{manifest} has no object masks (made by an older openwan): rendering the data again")
    elif manifest.is_file():
        _check_rendered_with(manifest, config, f"{recipe.source}: [data]")
        return manifest
    generate_dataset(out, config, "train")
    return manifest


def _check_rendered_with(manifest: Path, config: SynthWorldConfig, where: str) -> None:
    """Data already in the run folder is reused only if it was rendered with the settings asked for now;
    otherwise every later step would train on data the recipe does not describe."""
    from ..data.synth_world import settings_path, world_settings

    record = settings_path(manifest)
    try:
        had = json.loads(record.read_text())
    except FileNotFoundError:
        _log(f"{manifest.parent} has no {record.name} (rendered by an older openwan): reused without checking "
             "its settings")
        return
    except (OSError, ValueError) as e:
        raise InputError(f"{record}: unreadable ({e}); delete {manifest.parent} to render the data again") from e
    want = world_settings(config)
    diff = sorted(k for k in set(had) | set(want) if had.get(k) != want.get(k))
    if diff:
        changes = ", ".join(f"{k} {had.get(k)!r} -> {want.get(k)!r}" for k in diff)
        raise InputError(f"{where}: {manifest.parent} was rendered with other settings ({changes}); delete "
                         "that folder to render it again, or use another output_dir")


def build_extra_data(recipe: Recipe, out: Path) -> dict[str, Path]:
    """Render each ``[[extra_data]]`` set into ``out/data-<name>`` unless it is there; returns the
    manifest of every DiT dataset that reads one."""
    from ..data.synth_world import generate_dataset

    manifests = {}
    for extra in recipe.extra_data:
        manifest = out / f"data-{extra.name}" / "train.jsonl"
        config = _world_config(recipe, extra)
        if manifest.is_file():
            _check_rendered_with(manifest, config, f"{recipe.source}: extra_data '{extra.name}'")
        else:
            _log(f"extra data '{extra.name}': {extra.clips} clips -> {manifest.parent}")
            generate_dataset(manifest.parent, config, "train")
        manifests.update({name: manifest for name in extra.datasets})
    return manifests


def build_scaffold(recipe: Recipe, out: Path) -> Path:
    """Official-layout folder: world tokenizer + random umT5 + placeholder DiT/VAE (both get trained)."""
    import tempfile

    from ..checkpoint.convert import save_official
    from ..checkpoint.random_init import TINY_DIT, TINY_VAE, build_random_models
    from ..checkpoint.tiny_tokenizer import build_tiny_tokenizer
    from ..data.synth_captions import COLOUR_WORDS, SHAPE_WORDS, SIZE_WORDS, caption_corpus
    from ..data.synth_world import COLOURS, SHAPES

    te = recipe.text_encoder
    t5 = dict(d_model=te.d_model, d_ff=te.d_ff, num_heads=te.num_heads, d_kv=te.d_kv, num_layers=te.num_layers)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = caption_corpus(shapes=SHAPES, colours=tuple(COLOURS))
        # Chinese attribute words as fixed pieces, so colour and shape stay separate tokens
        words = ({SHAPE_WORDS[s]["zh"] for s in SHAPES} | {COLOUR_WORDS[c]["zh"] for c in COLOURS}
                 | {w["zh"] for w in SIZE_WORDS.values()})
        tok = build_tiny_tokenizer(Path(tmp) / "tokenizer", vocab_size=recipe.tokenizer.vocab_size,
                                   corpus=corpus, pieces=recipe.tokenizer.pieces, symbols=sorted(words))
        dit, vae, t5_sd = build_random_models(TINY_DIT, TINY_VAE, t5, vocab_size=recipe.tokenizer.vocab_size,
                                              seed=te.seed, t5_std=te.init_std)
        return save_official(out, dit=dit.state_dict(), dit_config=dit.config, vae=vae.state_dict(), t5=t5_sd,
                             tokenizer=tok)


def build_text_encoder(recipe: Recipe, scaffold: Path, out: Path) -> Path:
    """The scaffold with its umT5 trained on the world's captions; ``caption_encoder.json`` holds the
    held-out accuracy per attribute."""
    from ..checkpoint.convert import read_official_components, save_official
    from ..checkpoint.io import write_text_atomic
    from ..checkpoint.keymap_t5 import t5_transformers_to_official
    from ..checkpoint.layout import find_checkpoint
    from ..checkpoint.loader import load_text_encoder
    from .caption_encoder import train_caption_encoder
    from .config import load_config

    te = recipe.text_encoder
    files = find_checkpoint(scaffold)
    encoder = load_text_encoder(files.text_encoder, files.tokenizer, expected_layout=files.expected_layout)
    dropout_prompt = load_config(recipe.dit, recipe.dit_overrides).flow.dropout_prompt
    result = train_caption_encoder(encoder.model, encoder.tokenizer, _world_config(recipe), steps=te.train_steps,
                                   batch_size=te.train_batch, lr=te.train_lr, specs=te.train_specs, seed=te.seed,
                                   dropout_prompt=dropout_prompt)
    parts = read_official_components(files)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_official(tmp, dit=parts["dit"], dit_config=parts["dit_config"], vae=parts["vae"],
                  t5=t5_transformers_to_official(encoder.model.state_dict()), tokenizer=files.tokenizer)
    write_text_atomic(tmp / "caption_encoder.json", json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    tmp.rename(out)
    _log("caption encoder held-out accuracy: "
         + ", ".join(f"{k} {v:.1%}" for k, v in result.heldout_accuracy.items()))
    return out


def _train(config: str, overrides: list[str], *, output_dir: Path, base: Path, manifest: Path,
           extra: dict[str, Path] | None = None) -> Path:
    """Train ``config``; every dataset reads ``manifest`` except those ``extra`` maps to their own."""
    from .config import load_config
    from .trainer import train

    cfg = load_config(config, [f"run.output_dir={json.dumps(str(output_dir))}",
                               f"model.base={json.dumps(str(base))}", *overrides])
    for d in cfg.datasets:
        d.manifest = str((extra or {}).get(d.name, manifest))
    result = train(cfg)
    if result.export_dir is None:
        raise InputError(f"training {config} exported no model")
    return result.export_dir


@torch.no_grad()
def latent_statistics(vae, manifest: Path, clips: int, frames: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the VAE posterior means over the first ``clips`` clips of ``manifest``."""
    from ..data.manifest import read_manifest
    from ..media import frames_to_tensor, read_video

    entries = read_manifest(manifest)[:clips]
    if not entries:
        raise InputError(f"{manifest} has no clips to measure latent statistics on")
    total = sq = None
    count = 0
    for e in entries:
        mu, _ = vae.encode_distribution(frames_to_tensor(read_video(e.path)[0][:frames])[None])
        flat = mu.double().transpose(0, 1).reshape(mu.shape[1], -1)  # [z, n]
        total = flat.sum(1) if total is None else total + flat.sum(1)
        sq = (flat ** 2).sum(1) if sq is None else sq + (flat ** 2).sum(1)
        count += flat.shape[1]
    mean = total / count
    std = (sq / count - mean ** 2).clamp_min(1e-12).sqrt()
    return [round(float(v), 5) for v in mean], [round(float(v), 5) for v in std]


def build_latent_stats(recipe: Recipe, vae_model: Path, text: Path, manifest: Path, out: Path) -> Path:
    """The DiT's base: the trained VAE with per-channel latent mean/std, plus the text encoder of ``text``
    (the ``text`` step's folder, or the scaffold).

    The text side does not come from the VAE run's copy of it, so a new tokenizer or text encoder only
    reruns this step and the DiT (the VAE never reads text)."""
    from ..checkpoint.convert import read_official_components, save_official
    from ..checkpoint.layout import find_checkpoint
    from ..checkpoint.loader import load_vae, read_official_state_dict

    files, text_files = find_checkpoint(vae_model), find_checkpoint(text)
    vae = load_vae(files.vae, config_path=files.vae_config, dtype=torch.float32).eval()
    mean, std = latent_statistics(vae, manifest, recipe.stats_clips, recipe.data.frames)
    parts = read_official_components(files)
    t5 = read_official_state_dict(text_files.text_encoder, "t5", text_files.expected_layout)  # only the text side
    vae_config = dataclasses.replace(parts["vae_config"], latents_mean=tuple(mean), latents_std=tuple(std))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_official(tmp, dit=parts["dit"], dit_config=parts["dit_config"], vae=parts["vae"], t5=t5,
                  tokenizer=text_files.tokenizer, vae_config=vae_config)
    tmp.rename(out)
    return out


def run_recipe(recipe: Recipe) -> Path:
    """Run (or resume) every step of ``recipe``; returns the final model folder."""
    if recipe.decoder:
        check_decoder_config(recipe)
    if recipe.dit_finetune:
        check_dit_finetune_config(recipe)
    check_extra_data(recipe)
    check_compile(recipe)
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    record_environment(out / "environment.jsonl", recipe=str(recipe.source))  # one line per (re)run
    _log(f"data -> {out / 'data'}")
    manifest = build_data(recipe, out / "data")
    extra = build_extra_data(recipe, out)
    scaffold = out / "scaffold"
    if not (scaffold / "config.json").is_file():
        _log(f"scaffold (tokenizer + text encoder) -> {scaffold}")
        build_scaffold(recipe, scaffold)
    text = scaffold
    if recipe.text_encoder.train_steps > 0:
        text = out / "text"
        if not (text / "config.json").is_file():
            _log(f"text encoder: {recipe.text_encoder.train_steps} steps on the world's captions -> {text}")
            build_text_encoder(recipe, scaffold, text)
    vae_model = out / "vae" / "final"
    if not (vae_model / "config.json").is_file():
        _log("vae training")
        vae_model = _train(recipe.vae, recipe.vae_overrides, output_dir=out / "vae", base=scaffold, manifest=manifest)
    base = out / "latents"
    if not base.is_dir():
        _log(f"latent statistics over {recipe.stats_clips} clips -> {base}")
        build_latent_stats(recipe, vae_model, text, manifest, base)
    decoder = None
    if recipe.decoder:
        decoder = out / "decoder" / "final"
        if not (decoder / "config.json").is_file():
            _log("vae decoder fine-tuning (encoder frozen)")
            decoder = _train(recipe.decoder, recipe.decoder_overrides, output_dir=out / "decoder", base=base,
                             manifest=manifest)
    dit_model = out / "dit" / "final"
    if not (dit_model / "config.json").is_file():
        _log("dit training")
        dit_model = _train(recipe.dit, recipe.dit_overrides, output_dir=out / "dit", base=base, manifest=manifest,
                           extra=extra)
        if (out / "dit-finetune").exists():  # it continued the DiT just replaced
            _log(f"removing {out / 'dit-finetune'}: made from the previous dit step")
            shutil.rmtree(out / "dit-finetune")
    if recipe.dit_finetune:
        tuned = out / "dit-finetune" / "final"
        if not (tuned / "config.json").is_file():
            _log("dit fine-tuning")
            share_latent_cache(out / "dit", out / "dit-finetune")
            tuned = _train(recipe.dit_finetune, recipe.dit_finetune_overrides, output_dir=out / "dit-finetune",
                           base=dit_model, manifest=manifest, extra=extra)
        dit_model = tuned
    model = out / "model"
    tmp = out / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(dit_model, tmp)
    if decoder is not None:
        take_decoder(decoder, tmp)
    write_sample_config(tmp, sample_defaults(recipe))
    shutil.rmtree(model, ignore_errors=True)
    tmp.rename(model)
    _log(f"done in {(time.time() - started) / 60:.1f} min: {model}")
    return model


def check_decoder_config(recipe: Recipe) -> None:
    """The decoder step's config (with its overrides) must keep the encoder: the DiT is trained on the
    encoder's latents. Checked before any step runs."""
    from .config import load_config

    cfg = load_config(recipe.decoder, recipe.decoder_overrides)
    if cfg.run.task != "vae" or not cfg.vae.freeze_encoder or cfg.model.init != "base":
        raise InputError(f"{recipe.source}: decoder = {recipe.decoder} must be a VAE run (task = 'vae') with "
                         "model.init = 'base' and vae.freeze_encoder = true: the DiT is trained on the encoder's "
                         "latents, so only the decoder may change")


def check_dit_finetune_config(recipe: Recipe) -> None:
    """The DiT fine-tune must continue the DiT step's weights (a DiT run with model.init = 'base')."""
    from .config import load_config

    cfg = load_config(recipe.dit_finetune, recipe.dit_finetune_overrides)
    if cfg.run.task != "dit" or cfg.model.init != "base":
        raise InputError(f"{recipe.source}: dit_finetune = {recipe.dit_finetune} must be a DiT run (task = 'dit') "
                         "with model.init = 'base': it continues the weights of the dit step")


def check_extra_data(recipe: Recipe) -> None:
    """Every DiT dataset an ``[[extra_data]]`` set names must exist (checked before hours of VAE training)."""
    from .config import load_config

    if not recipe.extra_data:
        return
    configs = [load_config(recipe.dit, recipe.dit_overrides)]
    if recipe.dit_finetune:
        configs.append(load_config(recipe.dit_finetune, recipe.dit_finetune_overrides))
    known = {d.name for cfg in configs for d in cfg.datasets}
    for extra in recipe.extra_data:
        unknown = sorted(set(extra.datasets) - known)
        if unknown:
            raise InputError(f"{recipe.source}: extra_data '{extra.name}' feeds datasets {unknown}, which no DiT "
                             f"config of this recipe has; its [[datasets]] are {sorted(known)}")


def check_compile(recipe: Recipe) -> None:
    """A DiT step with ``run.compile`` needs a working torch.compile: probed before the data and VAE steps."""
    from ..devices import resolve_device
    from .config import load_config
    from .torch_compile import require_torch_compile

    steps = [(recipe.dit, recipe.dit_overrides)]
    if recipe.dit_finetune:
        steps.append((recipe.dit_finetune, recipe.dit_finetune_overrides))
    for path, overrides in steps:
        cfg = load_config(path, overrides)
        if cfg.run.compile:
            require_torch_compile(resolve_device(cfg.run.device), str(cfg.source))


def share_latent_cache(first: Path, second: Path) -> None:
    """Let run ``second`` read run ``first``'s latent cache (``cache/`` is a link to it). Its datasets are the
    same clips encoded by the same VAE and text encoder (the second run's base is the first's export), so
    nothing is encoded again; each cache's source.json still checks that. Where links cannot be made, the
    second run encodes its own."""
    link = second / "cache"
    if link.exists() or link.is_symlink() or not (first / "cache").is_dir():
        return
    second.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(os.path.relpath(first / "cache", second), target_is_directory=True)
    except OSError as e:
        _log(f"could not link {link} to {first / 'cache'} ({e}); the fine-tune encodes its clips itself")


def take_decoder(decoder: Path, model: Path) -> None:
    """Put the VAE of the ``decoder`` run's export into the ``model`` folder, after checking that its
    encoder is the model's own (bit for bit)."""
    from ..checkpoint.layout import find_checkpoint
    from ..checkpoint.loader import read_official_state_dict

    new_files, old_files = find_checkpoint(decoder), find_checkpoint(model)
    new = read_official_state_dict(new_files.vae, "vae", new_files.expected_layout)
    old = read_official_state_dict(old_files.vae, "vae", old_files.expected_layout)
    if set(old) != set(new):
        raise InputError(f"{decoder}: its VAE does not keep the model's encoder: the keys differ "
                         f"(e.g. {sorted(set(old) ^ set(new))[:5]})")
    changed = sorted(k for k in old if k.startswith(("encoder.", "conv1.")) and not torch.equal(old[k], new[k]))
    if changed:
        raise InputError(f"{decoder}: its VAE does not keep the model's encoder ({len(changed)} encoder tensors "
                         f"differ, e.g. {changed[:3]})")
    shutil.copyfile(new_files.vae, old_files.vae)


def recipe_summary(recipe: Recipe) -> dict[str, Any]:
    d = dataclasses.asdict(recipe)
    d.pop("source")
    return d
