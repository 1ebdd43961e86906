"""The ``openwan`` command line. Each subcommand mirrors a Python API function."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys

from . import __version__
from .errors import OpenWanError

# openwan.sampling.SOLVERS, spelled out so that parsing arguments (and --help) does not import torch
SOLVER_CHOICES = ("unipc", "dpm++", "euler")

EPILOG = """examples:
  openwan generate "a red circle falls and bounces"          # the bundled shapes-world model, on any CPU
  openwan generate "一个蓝色的正方形向左移动" -o square.mp4
  openwan generate "a corgi running on a beach at sunset" --model Wan2.1-T2V-1.3B --output corgi.mp4
  openwan generate "a lighthouse in a storm" --model Wan2.1-T2V-14B --size 1280x720 --offload
  openwan generate "a red apple on a table" --model Wan2.1-T2V-14B --frames 1 --size 1024x1024 -o apple.png
  openwan info Wan2.1-T2V-1.3B
  openwan convert Wan2.1-T2V-1.3B Wan2.1-T2V-1.3B-Diffusers --to diffusers
  openwan train configs/train/example.toml --set stages.0.steps=100
  torchrun --nproc_per_node 8 -m openwan.cli train cfg.toml --set parallel.cp=2
  openwan export runs/example --output my-model
"""


def _size(text: str) -> tuple[int, int]:
    from .validation import parse_size

    try:
        return parse_size(text)
    except OpenWanError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _lora(text: str) -> tuple[str, float]:
    """FILE or FILE:SCALE. Only a float after the last ':' is a scale, so C:\\loras\\x.safetensors is a path."""
    if os.path.isfile(text):  # an existing file whose name has a ':' is taken whole
        return text, 1.0
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            scale = float(tail)
        except ValueError:
            scale = None
        if scale is not None:
            if not math.isfinite(scale):
                raise argparse.ArgumentTypeError(f"LoRA scale must be a finite number, got {tail!r} in {text!r}")
            return path, scale
        if tail and not any(c in tail for c in "/\\.") and len(path) > 1:
            # "style.safetensors:0,8" or "x.safetensors:strong": a scale was meant, not a path
            raise argparse.ArgumentTypeError(f"LoRA scale must be a number (FILE:SCALE, e.g. style.safetensors:0.8), "
                                             f"got {tail!r} in {text!r}")
    if not text:
        raise argparse.ArgumentTypeError("--lora needs a file (FILE or FILE:SCALE)")
    return text, 1.0


def _baseline_guidance(text: str) -> float | str:
    """--baseline-guidance: a number, or "none" for no baseline run."""
    if text.strip().lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--baseline-guidance must be a number or 'none', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="openwan",
        description=("Wan 2.1 video generation: generate, train, export, evaluate, make data, inspect and convert "
                     "checkpoints."),
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"openwan {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more (debug level)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    g = sub.add_parser(
        "generate", help="generate a video (or an image with --frames 1) from a text prompt",
        description="Generate a video from a text prompt with a Wan 2.1 text-to-video checkpoint (default: the "
        "bundled shapes-world model). Unset sampling options take the checkpoint's sample_config.json, else "
        "the variant's official defaults (T2V: 50 steps, guidance 5, shift 5, 81 frames at 16 fps).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g.add_argument("prompt", help="what to generate; an empty string generates unconditionally")
    g.add_argument("--model", "-m", default=None,
                   help="checkpoint: official dir (Wan2.1-T2V-1.3B/), diffusers dir, or a single DiT .safetensors "
                   "(default: the bundled shapes-world model, 64x64 x 17 frames, runs in seconds on a CPU)")
    g.add_argument("--output", "-o", default="output.mp4", help=".mp4 for video; .png for --frames 1")
    g.add_argument("--size", type=_size, default=None,
                   help="WIDTHxHEIGHT, multiples of 16 (default: the variant's, 832x480 for 1.3B)")
    g.add_argument("--frames", type=int, default=None, help="number of frames, 4n+1 (default 81; 1 = image)")
    g.add_argument("--steps", type=int, default=None, help="sampling steps (default 50)")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 5.0)")
    g.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="apply guidance only at noise levels LOW <= sigma <= HIGH (0 = clean, 1 = noise); "
                   "steps outside run one DiT pass instead of two (default: the checkpoint's, else 0 1 = always)")
    g.add_argument("--shift", type=float, default=None, help="noise schedule shift (default 5.0)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default: random, recorded in the metadata)")
    g.add_argument("--solver", default="unipc", choices=SOLVER_CHOICES, help="sampler")
    g.add_argument("--negative-prompt", default=None,
                   help="what to avoid (default: the official Chinese negative prompt; '' for none)")
    g.add_argument("--fps", type=int, default=16, help="frame rate of the written video")
    g.add_argument("--device", default=None, help="cuda, cuda:1, mps or cpu (default: best available)")
    g.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"],
                   help="DiT precision (default: bf16 on GPU, fp32 on CPU)")
    g.add_argument("--offload", action="store_true",
                   help="keep models on the CPU and move each to the GPU only while it runs (less VRAM)")
    g.add_argument("--text-encoder-device", default=None, help="run umT5 here, e.g. cpu to save VRAM")
    g.add_argument("--vae", default=None, help="VAE file, overriding the checkpoint's (needed for single files)")
    g.add_argument("--text-encoder", default=None, help="umT5 file or folder, overriding the checkpoint's")
    g.add_argument("--tokenizer", default=None, help="tokenizer folder, overriding the checkpoint's")
    g.add_argument("--lora", action="append", type=_lora, default=[], metavar="FILE[:SCALE]",
                   help="merge a LoRA (diffusers, ComfyUI, kohya or openwan naming) into the DiT at SCALE "
                   "(default 1.0); repeat to stack several")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    i = sub.add_parser("info", help="print the layout, files and model variant detected at a path",
                       description="Inspect a checkpoint without loading it into a model.")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="machine-readable output")

    c = sub.add_parser("convert", help="convert a checkpoint between the official and diffusers layouts",
                       description="Convert all components (DiT, VAE, umT5, tokenizer, configs). Tensors are "
                       "copied bit for bit; only names and configs change.")
    c.add_argument("src")
    c.add_argument("dst", help="new (or empty) output folder")
    c.add_argument("--to", required=True, choices=["official", "diffusers"])

    r = sub.add_parser("init-random", help="write a tiny random-weight checkpoint (for smoke tests and demos)",
                       description="Write a small Wan-architecture checkpoint with random weights and a small "
                       "bilingual tokenizer. It generates noise-like videos: use it to check an installation "
                       "or a pipeline end to end without downloading the real weights.")
    r.add_argument("dst")
    r.add_argument("--layout", default="official", choices=["official", "diffusers"])
    r.add_argument("--seed", type=int, default=0)

    dp = sub.add_parser("data", help="dataset tools (synth-world: the procedural bilingual shapes world)",
                        description="Dataset tools. `openwan data synth-world OUT` renders the procedural "
                        "shapes world (clips + a training manifest).")
    data_sub = dp.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    from .data.synth_world import add_synth_world_parser

    add_synth_world_parser(data_sub)

    t = sub.add_parser(
        "train", help="train (or resume) a DiT, a LoRA or a VAE from a TOML/YAML config",
        description="Run the curriculum of a training config: its [[stages]] in order, each with its own "
        "datasets, mix weights, buckets, batch size, LR and steps. Re-running the same command resumes from "
        "the newest complete checkpoint in run.output_dir. For several processes launch with torchrun, e.g. "
        "`torchrun --nproc_per_node 8 -m openwan.cli train cfg.toml` (FSDP2 over all ranks; parallel.cp > 1 "
        "adds Ulysses context parallel). The trained model is exported to <output_dir>/final at the end.",
    )
    t.add_argument("config", help="training config (.toml, .yaml or .yml)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set stages.0.steps=100 --set optim.lr=3e-4 "
                   "(relative paths stay relative to the config file)")
    t.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per rank")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    rc = sub.add_parser(
        "recipe", help="build a whole model from a recipe: data, tokenizer, VAE, latent stats, DiT, export",
        description="Run every step of a recipe file (e.g. configs/shapes-world/recipe.toml, which made the "
        "bundled model): render the data, train a tokenizer, build the text encoder, train the VAE, measure "
        "its latent statistics, optionally fine-tune the VAE's decoder (the recipe's `decoder` config; the "
        "encoder and so the latents stay), train the DiT, optionally continue it (the recipe's `dit_finetune` "
        "config) and write <output_dir>/model with its sampling defaults. "
        "Re-running resumes: finished steps are skipped and training resumes from its checkpoints.",
        epilog="example: openwan recipe configs/shapes-world/recipe.toml --set data.clips=64 "
        "--vae-set stages.0.steps=10 --dit-set stages.0.steps=10")
    rc.add_argument("recipe", help="recipe file (.toml)")
    rc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a recipe value, e.g. --set data.clips=64 --set output_dir=/tmp/run")
    rc.add_argument("--vae-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of the VAE training config, e.g. --vae-set stages.0.steps=10")
    rc.add_argument("--dit-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of the DiT training config, e.g. --dit-set stages.0.steps=10")
    rc.add_argument("--decoder-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of the decoder fine-tuning config (the recipe's `decoder`)")
    rc.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of the DiT fine-tuning config (the recipe's `dit_finetune`)")

    e = sub.add_parser(
        "export", help="write a training run's model as an inference checkpoint (official layout)",
        description="Export the newest (or --step) checkpoint of a run: the DiT (EMA weights when the run "
        "kept an EMA) plus the base checkpoint's VAE, umT5 and tokenizer, in the official layout that "
        "`openwan generate --model` loads. A LoRA run writes its adapter file (add --merge for a full model).",
    )
    e.add_argument("run", help="the run's output_dir")
    e.add_argument("--output", "-o", required=True, help="folder to write")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest complete one)")
    e.add_argument("--no-ema", action="store_true", help="export the live weights instead of the EMA")
    e.add_argument("--merge", action="store_true", help="LoRA runs: also write the base model with the LoRA merged")
    b = sub.add_parser(
        "bench", help="score videos with a benchmark suite (wanbench, vbench, motion-physics, shapes) and write "
        "reports",
        description="Score folders of videos (each with a manifest.jsonl of prompts) or videos generated by a "
        "checkpoint with a benchmark suite; writes report.json, report.csv, videos.csv and report.html. "
        "The shapes suite checks a shapes-world model against the world's ground truth (colour, shape, "
        "direction, fall + bounce, collision, VAE PSNR, guidance vs none) and writes report.json, report.md, "
        "grid.png and grid.gif; without --model or --videos it benchmarks the bundled model.",
        epilog="example: openwan bench shapes --samples 4 --out bench-shapes",
    )
    b.add_argument("suite", choices=["wanbench", "vbench", "motion-physics", "shapes"])
    b.add_argument("--videos", action="append", default=[], metavar="DIR",
                   help="folder of videos with manifest.jsonl/.csv (repeat per model; model = folder name)")
    b.add_argument("--name", action="append", default=[], metavar="NAME",
                   help="model name for the matching --videos folder (in order)")
    b.add_argument("--model", "-m", default=None, help="checkpoint to generate the videos with instead of --videos "
                   "(shapes: default the bundled model)")
    b.add_argument("--samples", type=int, default=None,
                   help="runs per prompt with --model (default: suite's; shapes: 4)")
    b.add_argument("--prompts", default=None, help="prompt file (.txt or .jsonl) for --model generation")
    b.add_argument("--seed", type=int, default=0, help="base seed for --model generation")
    b.add_argument("--out", "-o", default="bench-out", help="report folder")
    b.add_argument("--margin", type=float, default=None,
                   help="scores within this of the best tie (default 0.25 for motion-physics, 0.01 otherwise)")
    b.add_argument("--weight", action="append", default=[], metavar="DIM=W", help="wanbench dimension weight")
    b.add_argument("--clip", default=None, metavar="PATH",
                   help="local transformers CLIP folder: background consistency, text alignment")
    b.add_argument("--dino", default=None, metavar="PATH", help="local DINOv2/ViT folder: subject (ID) consistency")
    b.add_argument("--musiq", default=None, metavar="PATH",
                   help="MUSIQ weights file (pyiqa layout, e.g. SPAQ): imaging quality as VBench measures it "
                   "(default: NIQE, weight-free)")
    b.add_argument("--aesthetic", default=None, metavar="PATH",
                   help="LAION aesthetic predictor head (.pth; with --clip = CLIP ViT-L/14): aesthetic quality")
    b.add_argument("--judge", default=None, metavar="URL",
                   help="OpenAI-compatible VLM endpoint (e.g. http://localhost:8000/v1) for physics and "
                   "instruction-following judgements")
    b.add_argument("--judge-model", default=None, help="model name to ask at --judge")
    b.add_argument("--reference", default=None, metavar="DIR",
                   help="real reference videos + manifest.jsonl (prompt per video): Physics-IQ comparison")
    b.add_argument("--guidance", type=float, default=None,
                   help="shapes: guidance scale of the generated videos (default: the checkpoint's)")
    b.add_argument("--guidance-interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="shapes: sigmas between which the generated videos are guided (default: the checkpoint's)")
    b.add_argument("--steps", type=int, default=None,
                   help="shapes: sampling steps of the generated videos (default: the checkpoint's)")
    b.add_argument("--shift", type=float, default=None,
                   help="shapes: noise-schedule shift of the generated videos (default: the checkpoint's)")
    b.add_argument("--solver", default=None, choices=SOLVER_CHOICES,
                   help="shapes: sampler of the generated videos (default unipc, as in openwan generate)")
    b.add_argument("--baseline-guidance", type=_baseline_guidance, default=None, metavar="G|none",
                   help="shapes: also generate the same prompts and seeds at this guidance and compare "
                   "adherence (default 1 = no CFG; 'none' skips it)")
    b.add_argument("--vae-clips", type=int, default=None,
                   help="shapes: held-out clips for the VAE reconstruction PSNR (default 24; 0 skips it)")
    b.add_argument("--sensitivity-clips", type=int, default=None,
                   help="shapes: held-out clips per attribute for the prompt-sensitivity probe: the DiT's loss "
                   "with the true caption vs one with the colour, shape or motion swapped (default 24; 0 skips)")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except OpenWanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _generate(args) -> int:
    from .media import check_writable
    from .pipelines import load_pipeline
    from .sampling import check_guidance_interval

    # Fail on an unwritable output or a bad option before spending minutes loading weights.
    check_writable(args.output, frames=args.frames if args.frames is not None else 81)
    if args.guidance_interval is not None:
        check_guidance_interval(args.guidance_interval)
    pipe = load_pipeline(args.model, device=args.device, dtype=args.dtype, offload=args.offload,
                         text_encoder_device=args.text_encoder_device, vae=args.vae,
                         text_encoder=args.text_encoder, tokenizer=args.tokenizer, loras=args.lora)
    width, height = args.size if args.size else (None, None)
    result = pipe.generate(
        args.prompt, negative_prompt=args.negative_prompt, width=width, height=height, frames=args.frames,
        steps=args.steps, guidance=args.guidance, guidance_interval=args.guidance_interval, shift=args.shift,
        seed=args.seed, solver=args.solver, output=args.output, fps=args.fps, progress=not args.no_progress,
    )
    m = result.metadata
    print(f"wrote {result.path} ({m['frames']} frames, {m['width']}x{m['height']}, seed {m['seed']}, "
          f"{m['seconds']:.1f} s)")
    return 0


def _info(args) -> int:
    from .checkpoint.inspect import describe_checkpoint, format_description

    desc = describe_checkpoint(args.path)
    print(json.dumps(desc, indent=2) if args.json else format_description(desc))
    return 0


def _convert(args) -> int:
    from .checkpoint.convert import convert_checkpoint

    out = convert_checkpoint(args.src, args.dst, to=args.to)
    print(f"wrote {args.to} checkpoint to {out}")
    return 0


def _init_random(args) -> int:
    from .checkpoint.random_init import write_random_checkpoint

    out = write_random_checkpoint(args.dst, layout=args.layout, seed=args.seed)
    print(f"wrote a tiny random-weight checkpoint ({args.layout} layout) to {out}")
    return 0


def _data(args) -> int:
    from .data.synth_world import run_synth_world

    if args.data_command == "synth-world":
        return run_synth_world(args)
    raise AssertionError(f"unhandled data command {args.data_command}")  # argparse restricts the choices


def _recipe(args) -> int:
    from .training.recipe import load_recipe, run_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    recipe.vae_overrides += args.vae_set
    recipe.dit_overrides += args.dit_set
    recipe.decoder_overrides += args.decoder_set
    recipe.dit_finetune_overrides += args.finetune_set
    model = run_recipe(recipe)
    print(f"model written to {model}; try: openwan generate \"a red circle falls and bounces\" --model {model}")
    return 0


def _train(args) -> int:
    from .training import load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.no_progress:
        cfg.logging.progress = False
    result = train(cfg, num_workers=args.workers)
    if result.export_dir is not None:
        print(f"trained {result.steps} steps; model exported to {result.export_dir}")
    return 0


def _export(args) -> int:
    from .training import export_checkpoint

    out = export_checkpoint(args.run, args.output, step=args.step, use_ema=not args.no_ema, merge=args.merge)
    print(f"exported {args.run} to {out}")
    return 0


def _bench(args) -> int:
    import os

    from .bench.registry import MetricOptions
    from .bench.runner import run_bench
    from .errors import InputError

    if args.suite == "shapes":
        return _bench_shapes(args)
    shapes_only = _shapes_generation_flags(args)
    if shapes_only:
        raise InputError(f"{', '.join(shapes_only)} only apply to the shapes suite")
    if len(args.name) > len(args.videos):
        raise InputError(f"{len(args.name)} --name for {len(args.videos)} --videos folders")
    videos = [(d, args.name[i]) if i < len(args.name) else d for i, d in enumerate(args.videos)]
    weights = {}
    for item in args.weight:
        key, sep, val = item.partition("=")
        try:
            weights[key] = float(val)
        except ValueError:
            raise InputError(f"--weight must look like DIM=NUMBER, got {item!r}") from None
        if not sep:
            raise InputError(f"--weight must look like DIM=NUMBER, got {item!r}")
    result = run_bench(args.suite, videos=videos, model=args.model, samples=args.samples, prompts=args.prompts,
                       out=args.out, margin=args.margin, weights=weights or None, seed=args.seed,
                       progress=not args.no_progress,
                       options=MetricOptions(clip=args.clip, dino=args.dino, judge=args.judge,
                                             aesthetic=args.aesthetic, musiq=args.musiq,
                                             judge_model=args.judge_model,
                                             judge_api_key=os.environ.get("OPENWAN_JUDGE_API_KEY"),
                                             reference=args.reference))
    for p in result.problems:
        print(f"warning: {p.kind}: {p.path}: {p.message}", file=sys.stderr)
    card = result.scorecard
    for row in card.categories:
        print(f"{row}: " + ", ".join(f"{m} {'-' if card.scores[row][m] is None else f'{card.scores[row][m]:.3g}'}"
                                     for m in result.models) + f"  -> {card.winners[row].label}")
    print("average: " + ", ".join(f"{m} {'-' if v is None else f'{v:.3g}'}" for m, v in card.averages.items()))
    print(f"wrote {', '.join(str(f) for f in result.files.values())}")
    return 0


def _shapes_generation_flags(args) -> list[str]:
    """The shapes suite's generation options the user gave (they apply to `bench shapes --model` only)."""
    return [flag for flag, value in (("--guidance", args.guidance), ("--guidance-interval", args.guidance_interval),
                                     ("--steps", args.steps), ("--shift", args.shift), ("--solver", args.solver),
                                     ("--baseline-guidance", args.baseline_guidance), ("--vae-clips", args.vae_clips),
                                     ("--sensitivity-clips", args.sensitivity_clips)) if value is not None]


def _bench_shapes(args) -> int:
    from .bench.shapes_bench import run_shapes_bench, score_shapes_videos, summary_lines
    from .errors import InputError

    if args.prompts:
        raise InputError("the shapes suite uses the world's held-out prompts; --prompts does not apply")
    if len(args.videos) > 1:
        raise InputError("bench shapes takes one --videos folder (a run folder or its videos/ folder)")
    if args.videos and args.model is not None:
        raise InputError("give either --videos DIR (re-score) or --model PATH (generate), not both")
    if args.videos:
        given = ["--samples"] * (args.samples is not None) + _shapes_generation_flags(args)
        if given:
            raise InputError(f"{', '.join(given)} apply to generation (--model), not to --videos")
        result = score_shapes_videos(args.videos[0], out=args.out, progress=not args.no_progress)
    else:
        baseline = 1.0 if args.baseline_guidance is None else (
            None if args.baseline_guidance == "none" else args.baseline_guidance)
        result = run_shapes_bench(args.model, out=args.out, samples=4 if args.samples is None else args.samples,
                                  seed=args.seed, guidance=args.guidance, baseline_guidance=baseline,
                                  vae_clips=24 if args.vae_clips is None else args.vae_clips,
                                  sensitivity_clips=24 if args.sensitivity_clips is None else args.sensitivity_clips,
                                  guidance_interval=args.guidance_interval, steps=args.steps, shift=args.shift,
                                  solver=args.solver or "unipc", progress=not args.no_progress)
    print("\n".join(summary_lines(result)))
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote {', '.join(str(f) for f in result.files.values())}")
    return 0


COMMANDS = {"generate": _generate, "info": _info, "convert": _convert, "init-random": _init_random,
            "train": _train, "recipe": _recipe, "export": _export, "bench": _bench, "data": _data}

if __name__ == "__main__":
    sys.exit(main())
