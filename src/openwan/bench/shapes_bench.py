"""`openwan bench shapes`: the ground-truth benchmark of a shapes-world model.

:func:`run_shapes_bench` generates ``samples`` videos per held-out prompt (English and Chinese) with
recorded seeds, scores them with the shapes checker on the in-memory frames, repeats at a baseline
guidance (1 = no CFG) to show whether guidance helps, measures the VAE's reconstruction PSNR on
held-out clips, probes how much the DiT listens to each attribute word (:mod:`.prompt_sensitivity`),
and writes ``report.json``, ``report.md``, ``grid.png`` and ``grid.gif``.
:func:`score_shapes_videos` re-scores a folder such a run wrote (or any folder of videos with a
manifest that names each prompt's shape, colour and motion).

Layout of ``out``::

    report.json  report.md  grid.png  grid.gif
    videos/guidance-4/manifest.jsonl  p000_s0.mp4  p000_s0.npz  ...
    videos/guidance-1/...            (the baseline run)

The ``.npz`` next to each MP4 holds the exact uint8 frames that were scored: H.264 (yuv420p) is lossy,
so re-scoring the MP4 alone can move a borderline score; with the ``.npz`` a re-score gives the same
numbers. Folders without them are scored from the MP4s.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint.io import atomic_write, write_text_atomic
from ..errors import InputError
from ..media import frames_to_tensor, tensor_to_frames
from ..validation import check_int
from .prompt_sensitivity import PromptSensitivity, prompt_sensitivity
from .result import MetricResult
from .shapes import SHAPES, Palette, ShapesAnalysis
from .shapes_grid import FONT_ENV, find_cjk_font, grid_gif_frames, grid_png, has_cjk
from .suites.shapes import (
    LANGUAGES,
    MOTION_SCORE,
    TARGETS,
    ShapesPrompt,
    adherence,
    aggregate,
    breakdown,
    check_motion,
    headline,
    score_video,
    shapes_prompts,
)

MANIFEST = "manifest.jsonl"
PSNR_CAP_DB = 100.0  # an exact reconstruction is reported as this instead of infinity


# ----------------------------------------------------------------------------------------- results


@dataclass
class VideoScore:
    """One scored video: its prompt, seed and guidance, the checker's scores and what it saw."""

    prompt: ShapesPrompt
    sample: int
    seed: int | None
    guidance: float | None
    video: Path
    metrics: dict[str, MetricResult]
    analysis: dict[str, Any]
    source: str  # "memory" (scored as generated), "npz" (saved frames) or "mp4" (decoded video)

    @property
    def scores(self) -> dict[str, float | None]:
        return {k: m.value for k, m in self.metrics.items()}

    @property
    def adherence(self) -> float:
        return adherence(self.prompt.motion, self.scores)

    def row(self) -> dict[str, Any]:
        """What the suite aggregates read: motion, language and scores."""
        return {"motion": self.prompt.motion, "language": self.prompt.language, "scores": self.scores}

    def to_dict(self) -> dict[str, Any]:
        return {**self.prompt.to_dict(), "video": str(self.video), "sample": self.sample, "seed": self.seed,
                "guidance": self.guidance, "source": self.source, "scores": self.scores,
                "adherence": self.adherence, "deciding_score": MOTION_SCORE[self.prompt.motion],
                "metrics": {k: m.to_dict() for k, m in self.metrics.items()}, "analysis": self.analysis}


@dataclass
class ShapesRun:
    """All videos of one guidance scale; ``role`` is "main" or "baseline"."""

    role: str
    guidance: float | None
    directory: Path
    videos: list[VideoScore] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [v.row() for v in self.videos]

    @property
    def aggregates(self) -> dict[str, Any]:
        return aggregate(self.rows())

    def to_dict(self) -> dict[str, Any]:
        rows = self.rows()
        return {"role": self.role, "guidance": self.guidance, "directory": str(self.directory),
                "aggregates": aggregate(rows), "languages": breakdown(rows, "language"),
                "motions": breakdown(rows, "motion"), "videos": [v.to_dict() for v in self.videos]}


@dataclass
class VAEReconstruction:
    """PSNR (dB, uint8 frames, peak 255) of encode -> decode on held-out clips, and the checker's scores of
    the reconstructions: a generated video is decoded by the same VAE, so what the checker cannot read in
    a reconstruction no DiT can score (``checker_aggregates`` is that ceiling). The checker also scores each
    clip as rendered (``render_checker_aggregates``): its own accuracy on ground truth, the ceiling above
    the VAE's, so a low rate there is the checker's fault and a drop from it to the reconstructions the VAE's."""

    clips: list[dict[str, Any]]
    width: int
    height: int
    frames: int

    @property
    def mean_psnr_db(self) -> float | None:
        vals = [c["psnr_db"] for c in self.clips]
        return float(np.mean(vals)) if vals else None

    def _aggregates(self, key: str) -> dict[str, Any] | None:
        rows = [{"motion": c["motion"], "scores": c[key]} for c in self.clips if key in c]
        return aggregate(rows) if rows else None

    @property
    def checker_aggregates(self) -> dict[str, Any] | None:
        return self._aggregates("scores")

    @property
    def render_checker_aggregates(self) -> dict[str, Any] | None:
        return self._aggregates("render_scores")

    def to_dict(self) -> dict[str, Any]:
        return {"mean_psnr_db": self.mean_psnr_db, "checker_aggregates": self.checker_aggregates,
                "render_checker_aggregates": self.render_checker_aggregates,
                "clips": self.clips, "num_clips": len(self.clips), "size": [self.width, self.height],
                "frames": self.frames, "status": "ok" if self.clips else "not run: --vae-clips 0"}


@dataclass
class ShapesBenchResult:
    settings: dict[str, Any]
    main: ShapesRun
    baseline: ShapesRun | None = None
    vae: VAEReconstruction | None = None
    sensitivity: PromptSensitivity | None = None
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def guidance_helps(self) -> bool | None:
        """Whether the main guidance's adherence beats the baseline's (None without a baseline)."""
        if self.baseline is None or not self.baseline.videos:
            return None
        return bool(self.main.aggregates["adherence"] > self.baseline.aggregates["adherence"])

    @property
    def headline(self) -> list[dict[str, Any]]:
        return headline(self.main.aggregates, vae_psnr_db=self.vae.mean_psnr_db if self.vae else None,
                        baseline_adherence=self.baseline.aggregates["adherence"] if self.baseline else None,
                        main_guidance=self.main.guidance,
                        baseline_guidance=self.baseline.guidance if self.baseline else None)

    def to_dict(self) -> dict[str, Any]:
        base = self.baseline
        return _jsonable({
            "suite": "shapes", "settings": self.settings, "targets": TARGETS, "headline": self.headline,
            "main": self.main.to_dict(), "baseline": base.to_dict() if base else None,
            "guidance_comparison": {
                "main_guidance": self.main.guidance, "main_adherence": self.main.aggregates["adherence"],
                "baseline_guidance": base.guidance if base else None,
                "baseline_adherence": base.aggregates["adherence"] if base else None,
                "guidance_helps": self.guidance_helps,
                "status": "ok" if base else "not run: no baseline (--baseline-guidance none, the same "
                "guidance as the main run, or a --videos folder with one guidance)"},
            "vae": self.vae.to_dict() if self.vae else {"mean_psnr_db": None, "clips": [],
                                                        "status": "not run: needs a model (--model)"},
            "prompt_sensitivity": self.sensitivity.to_dict() if self.sensitivity else {
                "status": "not run: needs a model (--model) and --sensitivity-clips > 0"},
            "notes": self.notes, "files": {k: str(v) for k, v in self.files.items()},
        })


def _jsonable(x: Any) -> Any:
    """Plain JSON types; non-finite floats become None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, Path):
        return str(x)
    if x is None or isinstance(x, str):
        return x
    return str(x)


def _analysis_summary(a: ShapesAnalysis) -> dict[str, Any]:
    return {"main_colour": a.main_colour, "main_shape": a.main_shape, "colours": a.colours, "shapes": a.shapes,
            "motion": a.motion, "displacement": a.displacement, "camera_pan": a.camera_pan,
            "background_shift": a.background_shift, "size_change": a.size_change, "collision": a.collision,
            "falls_and_bounces": a.falls_and_bounces, "tracks": len(a.tracks)}


def _score(frames: np.ndarray, prompt: ShapesPrompt, **kw: Any) -> VideoScore:
    metrics, analysis = score_video(frames, prompt)
    return VideoScore(prompt=prompt, metrics=metrics, analysis=_analysis_summary(analysis), **kw)


# ----------------------------------------------------------------------------------------- checks


def _check_guidance(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        g = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number >= 0, got {value!r}") from None
    if not math.isfinite(g) or g < 0:
        raise InputError(f"{name} must be a finite number >= 0, got {value!r}")
    return g


def guidance_label(guidance: float) -> str:
    """Folder name of a run: guidance-4, guidance-1, guidance-4.5."""
    return f"guidance-{guidance:g}"


# ----------------------------------------------------------------------------------------- generation


def _save_frames(path: Path, frames: np.ndarray) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, frames=frames)

    return atomic_write(path, write)


def _generate_run(pipe, prompts: Sequence[ShapesPrompt], *, role: str, guidance: float,
                  guidance_interval: tuple[float, float], samples: int, seed: int, steps: int | None,
                  shift: float | None, solver: str, directory: Path, lossless: bool, model_name: str,
                  progress: bool) -> tuple[ShapesRun, dict[int, np.ndarray]]:
    """Generate, save and score ``samples`` videos per prompt at ``guidance``; returns the run and the
    first sample's frames per prompt index (for the grids)."""
    from tqdm.auto import tqdm

    run = ShapesRun(role, guidance, directory)
    firsts: dict[int, np.ndarray] = {}
    rows = []
    with tqdm(total=len(prompts) * samples, desc=f"shapes {guidance_label(guidance)}", unit="video",
              disable=not progress) as bar:
        for p in prompts:
            for s in range(samples):
                sd = seed + 1000 * p.index + s
                path = directory / f"p{p.index:03d}_s{s}.mp4"
                res = pipe.generate(p.prompt, seed=sd, guidance=guidance, guidance_interval=guidance_interval,
                                    steps=steps, shift=shift, solver=solver, output=path, progress=False)
                frames = np.asarray(res.frames)
                row = {"video": path.name, **p.to_dict(), "sample": s, "seed": sd, "guidance": guidance,
                       "role": role, "model": model_name}
                if lossless:
                    row["frames"] = _save_frames(path.with_suffix(".npz"), frames).name
                rows.append(row)
                run.videos.append(_score(frames, p, sample=s, seed=sd, guidance=guidance, video=path,
                                         source="memory"))
                firsts.setdefault(p.index, frames)
                bar.update(1)
    write_text_atomic(directory / MANIFEST, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return run, firsts


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 arrays of one shape (peak 255); identical arrays give PSNR_CAP_DB."""
    if a.shape != b.shape:
        raise InputError(f"PSNR needs arrays of one shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10.0 * math.log10(255.0 ** 2 / mse))


def vae_reconstruction(vae, *, width: int, height: int, frames: int, clips: int,
                       progress: bool = True) -> VAEReconstruction:
    """Render ``clips`` held-out clips of the shapes world at the model's size and frame count, encode and
    decode them with ``vae`` (``encode`` normalises, ``decode`` denormalises), measure PSNR on uint8 and
    score each reconstruction, and the clip as rendered, with the checker against the clip's own attributes."""
    import torch
    from tqdm.auto import tqdm

    from ..data.synth_world import SynthWorldConfig, caption_for, render_clip, sample_spec

    config = SynthWorldConfig(width=width, height=height, frames=frames)
    param = next(vae.parameters())
    out = []
    for i in tqdm(range(clips), desc="shapes vae", unit="clip", disable=not progress or clips == 0):
        spec = sample_spec(config, i, "heldout")
        video, _ = render_clip(spec)
        with torch.no_grad():
            rec = vae.decode(vae.encode(frames_to_tensor(video)[None].to(param.device, param.dtype)))
        rec_u8 = tensor_to_frames(rec[0])
        truth = ShapesPrompt(index=i, prompt=caption_for(spec, "en", 0), language="en", shape=spec.shape,
                             colour=spec.colour, motion=spec.motion, shape2=spec.shape2, colour2=spec.colour2)
        scores, _ = score_video(rec_u8, truth)
        render_scores, _ = score_video(video, truth)
        out.append({"index": i, "shape": spec.shape, "colour": spec.colour, "motion": spec.motion,
                    "background": spec.background, "seed": spec.seed, "psnr_db": psnr_uint8(video, rec_u8),
                    "scores": {k: m.value for k, m in scores.items()},
                    "render_scores": {k: m.value for k, m in render_scores.items()}})
    return VAEReconstruction(out, width, height, frames)


def run_shapes_bench(model: str | os.PathLike | None = None, *, out: str | os.PathLike, samples: int = 4,
                     seed: int = 0, guidance: float | None = None, baseline_guidance: float | None = 1.0,
                     guidance_interval: tuple[float, float] | None = None,
                     vae_clips: int = 24, sensitivity_clips: int = 24, languages: Sequence[str] = LANGUAGES,
                     max_prompts: int | None = None, steps: int | None = None, shift: float | None = None,
                     solver: str = "unipc", lossless: bool = True, progress: bool = True) -> ShapesBenchResult:
    """Benchmark a shapes-world model (``model=None``: the bundled one) against the world's ground truth.

    ``samples`` videos per prompt at ``guidance`` (default: the checkpoint's) with seeds
    ``seed + 1000 * prompt_index + sample``; the same prompts and seeds again at ``baseline_guidance``
    unless it is None or equal to the main guidance; ``vae_clips`` held-out clips for the VAE PSNR
    (0 skips it); ``sensitivity_clips`` held-out clips per attribute for the prompt-sensitivity probe (0
    skips it). ``languages`` / ``max_prompts`` restrict the prompts (quick runs); ``steps`` and ``shift``
    override the checkpoint's sampling steps and noise-schedule shift, ``guidance_interval`` the sigmas
    between which guidance applies, and ``solver`` picks the sampler as ``openwan generate --solver`` does
    (sweeps); ``lossless`` also saves each video's exact frames (.npz) so a
    re-score of ``out/videos`` gives the same numbers. Writes the reports
    into ``out``.
    """
    from .. import __version__, load_pipeline
    from ..sampling import SOLVERS, check_guidance_interval, check_shift

    if out is None:
        raise InputError("run_shapes_bench needs out= (a folder for the videos and reports)")
    check_int("samples", samples, 1)
    check_int("seed", seed, 0)
    check_int("vae_clips", vae_clips, 0)
    check_int("sensitivity_clips", sensitivity_clips, 0)
    if max_prompts is not None:
        check_int("max_prompts", max_prompts, 1)
    if steps is not None:
        check_int("steps", steps, 1)
    if shift is not None:
        shift = check_shift(shift)
    if solver not in SOLVERS:
        raise InputError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    guidance = _check_guidance("guidance", guidance)
    if guidance_interval is not None:
        guidance_interval = check_guidance_interval(guidance_interval)
    baseline_guidance = _check_guidance("baseline guidance", baseline_guidance)
    prompts = shapes_prompts(languages=languages)[:max_prompts]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")

    pipe = load_pipeline(model)
    d = pipe.defaults
    main_g = d.guidance if guidance is None else guidance
    interval = d.guidance_interval if guidance_interval is None else guidance_interval
    model_name = str(pipe.source)
    settings = {"model": model_name, "bundled": model is None, "steps": d.steps if steps is None else steps,
                "guidance": main_g, "guidance_interval": list(interval), "baseline_guidance": baseline_guidance,
                "samples": samples, "seed": seed,
                "seed_rule": "seed + 1000 * prompt_index + sample", "languages": list(languages),
                "prompts": len(prompts), "max_prompts": max_prompts, "size": list(d.size), "frames": d.frames,
                "shift": d.shift if shift is None else shift, "solver": solver, "negative_prompt": d.negative_prompt,
                "vae_clips": vae_clips, "sensitivity_clips": sensitivity_clips,
                "device": str(pipe.device), "dtype": str(pipe.dtype).removeprefix("torch."),
                "lossless_frames": lossless, "openwan_version": __version__}
    notes: list[str] = []
    kw: dict[str, Any] = {"samples": samples, "seed": seed, "steps": steps, "shift": shift, "solver": solver,
                          "lossless": lossless, "guidance_interval": interval, "model_name": model_name,
                          "progress": progress}
    main, firsts = _generate_run(pipe, prompts, role="main", guidance=main_g,
                                 directory=out / "videos" / guidance_label(main_g), **kw)
    baseline = None
    if baseline_guidance is not None and baseline_guidance != main_g:
        baseline, _ = _generate_run(pipe, prompts, role="baseline", guidance=baseline_guidance,
                                    directory=out / "videos" / guidance_label(baseline_guidance), **kw)
    elif baseline_guidance is not None:
        notes.append(f"baseline guidance {baseline_guidance:g} equals the main guidance: no comparison")
    vae = None
    if vae_clips:
        vae = vae_reconstruction(pipe.vae, width=d.size[0], height=d.size[1], frames=d.frames, clips=vae_clips,
                                 progress=progress)
    sensitivity = prompt_sensitivity(pipe, clips=sensitivity_clips, seed=seed, progress=progress) \
        if sensitivity_clips else None
    result = ShapesBenchResult(settings, main, baseline, vae, sensitivity=sensitivity, notes=notes)
    result.files = write_shapes_reports(result, out, firsts)
    return result


# ----------------------------------------------------------------------------------------- re-scoring


def _read_rows(manifest: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{manifest}:{n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InputError(f"{manifest}:{n}: must be a JSON object")
        rows.append((n, row))
    if not rows:
        raise InputError(f"{manifest}: no rows")
    return rows


def _prompt_of(row: dict[str, Any], where: str, n: int, known: Mapping[str, ShapesPrompt]) -> ShapesPrompt:
    """The row's prompt and attributes; attributes missing from the row come from the suite's prompt list."""
    text = row.get("prompt")
    if not isinstance(text, str) or not row.get("video"):
        raise InputError(f'{where}: needs "video" and "prompt" (and "shape", "colour", "motion")')
    suite = known.get(text)
    attrs = {k: row.get(k, getattr(suite, k) if suite else None)
             for k in ("shape", "colour", "motion", "shape2", "colour2")}
    if attrs["motion"] is None or attrs["shape"] is None or attrs["colour"] is None:
        raise InputError(f"{where}: prompt {text!r} is not a shapes-suite prompt, so the row needs "
                         '"shape", "colour" and "motion" (e.g. "moves left")')
    check_motion(attrs["motion"], where)
    palette = Palette().names
    for k, allowed in (("shape", SHAPES), ("colour", palette), ("shape2", SHAPES), ("colour2", palette)):
        if attrs[k] is not None and attrs[k] not in allowed:
            raise InputError(f"{where}: unknown {k} {attrs[k]!r}; use one of {list(allowed)}")
    if attrs["motion"] == "collides" and attrs["colour2"] is None:
        raise InputError(f'{where}: a "collides" row needs "colour2" (and "shape2") for the second object')
    lang = row.get("language") or (suite.language if suite else ("zh" if has_cjk(text) else "en"))
    index = row.get("prompt_index", suite.index if suite else n - 1)
    try:
        index = int(index)
    except (TypeError, ValueError):
        raise InputError(f"{where}: prompt_index must be an integer, got {index!r}") from None
    return ShapesPrompt(index, text, str(lang), attrs["shape"], attrs["colour"], attrs["motion"],
                        attrs["shape2"], attrs["colour2"])


def _load_frames(run_dir: Path, row: dict[str, Any], where: str) -> tuple[np.ndarray, Path, str]:
    from ..media import read_video

    video = run_dir / str(row["video"])
    npz = run_dir / str(row["frames"]) if row.get("frames") else None
    if npz is not None and npz.is_file():
        try:
            with np.load(npz) as f:
                frames = f["frames"]
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{where}: cannot read frames {npz}: {e}") from e
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"{where}: {npz} must hold uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        return frames, video, "npz"
    if not video.is_file():
        raise InputError(f"{where}: video {video} does not exist")
    return read_video(video)[0], video, "mp4"


def _float_or_none(v: Any, where: str, name: str) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {name} must be a number, got {v!r}") from None


def score_shapes_videos(directory: str | os.PathLike, *, out: str | os.PathLike | None = None,
                        progress: bool = True) -> ShapesBenchResult:
    """Score a folder of shapes-world videos: ``directory/manifest.jsonl`` or, as ``run_shapes_bench``
    writes them, one ``manifest.jsonl`` per subfolder (``out/videos/guidance-*``).

    Rows: ``{"video": "a.mp4", "prompt": ..., "shape": ..., "colour": ..., "motion": "moves left", ...}``
    (world motion names; shape/colour/motion may be left out for the suite's own prompts), optionally
    ``seed``, ``sample``, ``guidance``, ``role`` ("main"/"baseline") and ``frames`` (an .npz of the exact
    frames, preferred to the MP4). With two guidance scales the higher (or role "main") is the main run
    and the other the baseline. With ``out`` writes the reports there (no VAE numbers: no model).
    """
    from tqdm.auto import tqdm

    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"--videos {d}: not a directory")
    if (d / MANIFEST).is_file():
        manifests = [d / MANIFEST]
    else:
        manifests = sorted(p / MANIFEST for p in d.iterdir() if (p / MANIFEST).is_file())
    if not manifests:
        raise InputError(f"--videos {d}: no {MANIFEST} in it or its subfolders (rows like "
                         '{"video": "a.mp4", "prompt": "a red circle falls and bounces", "shape": "circle", '
                         '"colour": "red", "motion": "falls and bounces"})')
    known = {p.prompt: p for p in shapes_prompts()}
    todo = []
    for m in manifests:
        for n, row in _read_rows(m):
            where = f"{m}:{n}"
            prompt = _prompt_of(row, where, n, known)
            try:
                sample = int(row.get("sample") or 0)
                seed = int(row["seed"]) if row.get("seed") not in (None, "") else None
            except (TypeError, ValueError):
                raise InputError(f"{where}: sample/seed must be integers") from None
            g = _float_or_none(row.get("guidance"), where, "guidance")
            role = row.get("role")
            if role not in (None, "main", "baseline"):
                raise InputError(f'{where}: role must be "main" or "baseline", got {role!r}')
            todo.append((m.parent, row, where, prompt, sample, seed, g, role))

    groups: dict[float | None, list[tuple]] = {}
    for item in todo:
        groups.setdefault(item[6], []).append(item)
    if len(groups) > 2:
        raise InputError(f"--videos {d}: videos at {len(groups)} guidance scales "
                         f"({', '.join(str(g) for g in groups)}); point --videos at one or two run folders")
    keys = list(groups)
    mains = [g for g in keys if any(it[7] == "main" for it in groups[g])]
    main_key = mains[0] if mains else max(keys, key=lambda g: -math.inf if g is None else g)
    base_key = next((g for g in keys if g != main_key), None)

    runs: dict[str, ShapesRun] = {}
    firsts: dict[int, np.ndarray] = {}
    with tqdm(total=len(todo), desc="shapes score", unit="video", disable=not progress) as bar:
        for role, key in (("main", main_key), ("baseline", base_key)):
            if key is None and role == "baseline":
                continue
            items = groups[key]
            run = runs[role] = ShapesRun(role, key, items[0][0] if len({it[0] for it in items}) == 1 else d)
            for run_dir, row, where, prompt, sample, seed, g, _ in items:
                frames, video, source = _load_frames(run_dir, row, where)
                run.videos.append(_score(frames, prompt, sample=sample, seed=seed, guidance=g, video=video,
                                         source=source))
                if role == "main":
                    firsts.setdefault(prompt.index, frames)
                bar.update(1)
    models = sorted({str(it[1]["model"]) for it in todo if it[1].get("model")})
    seeds = [it[5] for it in todo if it[5] is not None]
    sources = sorted({v.source for r in runs.values() for v in r.videos})
    settings = {"videos": str(d), "model": models[0] if len(models) == 1 else (models or None),
                "guidance": main_key, "baseline_guidance": base_key,
                "samples": max(it[4] for it in todo) + 1, "seed": min(seeds) if seeds else None,
                "prompts": len({it[3].index for it in groups[main_key]}),
                "languages": sorted({it[3].language for it in todo}), "scored_from": sources}
    notes = []
    if "mp4" in sources:
        notes.append("some videos were scored from their MP4 (H.264 yuv420p, lossy): borderline scores can "
                     "differ from scoring the generated frames")
    result = ShapesBenchResult(settings, runs["main"], runs.get("baseline"), notes=notes)
    if out is not None:
        result.files = write_shapes_reports(result, out, firsts)
    return result


# ----------------------------------------------------------------------------------------- reports


def _fmt_pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def to_markdown(result: ShapesBenchResult) -> str:
    s = result.settings
    lines = ["# openwan bench shapes", ""]
    src = f"videos `{s['videos']}`" if "videos" in s else f"model `{s.get('model')}`"
    g = result.main.guidance
    bg = result.baseline.guidance if result.baseline else None
    lines.append(f"{src} · steps {s.get('steps', '—')} · shift {s.get('shift', '—')} · solver {s.get('solver', '—')}"
                 f" · guidance {'—' if g is None else f'{g:g}'}"
                 f" (baseline {'none' if bg is None else f'{bg:g}'}) · {s.get('samples')} sample(s) per prompt"
                 f" · seed {s.get('seed')} · {s.get('prompts')} prompt(s) ({', '.join(s.get('languages', []))})"
                 f" · {result.main.aggregates['videos']} videos")
    lines += ["", "| metric | value | target | met |", "|---|---|---|---|"]
    for r in result.headline:
        met = "—" if r["met"] is None else ("yes" if r["met"] else "no")
        lines.append(f"| {r['label']} | {r['text']} | {r['target']} | {met} |")
    lines += ["", "## Per language", "",
              "| language | videos | colour | shape | direction | fall R² | bounce | collision | size | adherence |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    rows = result.main.rows()
    for lang, a in breakdown(rows, "language").items():
        r2 = "—" if a["fall_mean_r2"] is None else f"{a['fall_mean_r2']:.3f}"
        lines.append(f"| {lang} | {a['videos']} | {_fmt_pct(a['colour_accuracy'])} | {_fmt_pct(a['shape_accuracy'])} | "
                     f"{_fmt_pct(a['direction_accuracy'])} | {r2} | {_fmt_pct(a['fall_bounce_rate'])} | "
                     f"{_fmt_pct(a['collision_rate'])} | {_fmt_pct(a['size_change_accuracy'])} | "
                     f"{_fmt_pct(a['adherence'])} |")
    lines += ["", "## Per motion", "", "| motion | videos | deciding score | motion correct | adherence |",
              "|---|---|---|---|---|"]
    for motion, a in breakdown(rows, "motion").items():
        name = MOTION_SCORE[motion]
        vals = [v.scores.get(name) for v in result.main.videos if v.prompt.motion == motion]
        rate = sum(0.0 if x is None else x for x in vals) / len(vals)
        lines.append(f"| {motion} | {a['videos']} | {name} | {_fmt_pct(rate)} | {_fmt_pct(a['adherence'])} |")
    agg = result.main.aggregates
    if agg.get("start_side_videos"):
        lines += ["", (f"Start side: {_fmt_pct(agg['start_side_rate'])} of the {agg['start_side_videos']} up/down/"
                       "left/right videos with a clear direction move away from the half of the frame their "
                       "object starts in (direction accuracy near chance with this near 100% means the DiT "
                       "reads the direction off where the object is, not off the words).")]
    ceiling = result.vae.checker_aggregates if result.vae is not None else None
    if ceiling is not None:
        columns = (result.vae.render_checker_aggregates, ceiling, result.main.aggregates)
        lines += ["", "## What the VAE lets through", "",
                  (f"The checker on {ceiling['videos']} held-out clips as rendered (its own accuracy on ground "
                   "truth) and encoded and decoded by the model's VAE, against their own attributes. Generated "
                   "videos pass through the same decoder, so the reconstructions' rates bound what the DiT can "
                   "score."), "",
                  "| metric | renders | VAE reconstructions | generated videos |", "|---|---|---|---|"]
        for key, label in (("colour_accuracy", "colour"), ("shape_accuracy", "shape"),
                           ("direction_accuracy", "direction"), ("fall_bounce_rate", "bounce"),
                           ("collision_rate", "collisions meet"), ("size_change_accuracy", "size change")):
            lines.append(f"| {label} | " + " | ".join(_fmt_pct(a[key] if a else None) for a in columns) + " |")
        r2 = [("—" if not a or a["fall_mean_r2"] is None else f"{a['fall_mean_r2']:.3f}") for a in columns]
        lines.append(f"| fall mean R² | {' | '.join(r2)} |")
    if result.sensitivity is not None:
        sig = ", ".join(f"{x:g}" for x in result.sensitivity.sigmas)
        lines += ["", "## Prompt sensitivity", "",
                  (f"Flow-matching loss on held-out clips with the true caption vs one attribute swapped (noise "
                   f"levels {sig}, same noise). Near 0% = the DiT ignores that word."), "",
                  "| attribute | clips | loss, true caption | loss, swapped | increase | true caption wins |",
                  "|---|---|---|---|---|---|"]
        for attr, a in result.sensitivity.by_attribute().items():
            lines.append(f"| {attr} | {a['clips']} | {a['loss_true']:.4f} | {a['loss_counterfactual']:.4f} | "
                         f"{100 * a['increase']:+.1f}% | {_fmt_pct(a['true_caption_wins'])} |")
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    lines += ["", "Every number, per-video score and seed: `report.json`. Samples: `grid.png`, `grid.gif`.", ""]
    return "\n".join(lines)


def write_shapes_reports(result: ShapesBenchResult, out: str | os.PathLike,
                         firsts: Mapping[int, np.ndarray]) -> dict[str, Path]:
    """grid.png and grid.gif (from ``firsts``: the first sample's frames per prompt index), report.json
    and report.md in ``out``; returns their paths."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    cjk = find_cjk_font()
    if firsts:
        note = (f"grid labels drawn with {cjk}" if cjk else "no CJK-capable font found (fc-list :lang=zh, the "
                f"usual font folders, ${FONT_ENV}): grid.png shows the English prompts only")
        if note not in result.notes:
            result.notes.append(note)
        png = grid_png(result.main, firsts, cjk)
        files["grid_png"] = atomic_write(d / "grid.png", lambda tmp: png.save(tmp, format="PNG"))
        gif = grid_gif_frames(result.main, firsts, cjk)
        if gif:
            fps = 16
            files["grid_gif"] = atomic_write(d / "grid.gif", lambda tmp: gif[0].save(
                tmp, format="GIF", save_all=True, append_images=gif[1:], duration=round(1000 / fps), loop=0))
    files["json"] = d / "report.json"
    files["markdown"] = d / "report.md"
    result.files = files
    write_text_atomic(files["json"], json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(files["markdown"], to_markdown(result))
    return files


def summary_lines(result: ShapesBenchResult) -> list[str]:
    """The headline table as aligned text lines (the CLI prints them)."""
    out = [f"{'metric':<20} {'value':<30} {'target':<40} met"]
    for r in result.headline:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        out.append(f"{r['label']:<20} {r['text']:<30} {r['target']:<40} {met}")
    return out


__all__ = ["ShapesBenchResult", "ShapesRun", "VAEReconstruction", "VideoScore", "guidance_label",
           "psnr_uint8", "run_shapes_bench", "score_shapes_videos", "summary_lines", "vae_reconstruction",
           "write_shapes_reports"]
