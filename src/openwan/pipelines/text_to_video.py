"""Text-to-video (and text-to-image, frames = 1) generation with a Wan 2.1 DiT.

prompt ─ umT5 ─> context [1, 512, 4096] ─┐
noise randn(16, T', H/8, W/8) ─> DiT ×2 (cond, uncond) ─> CFG ─> solver step ─> … ─> Wan-VAE decode ─> frames
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..configs import DEFAULT_NEGATIVE_PROMPT, SAMPLE_FPS, SampleDefaults, Variant
from ..errors import InputError
from ..media import check_writable, tensor_to_frames, write_image, write_sidecar, write_video
from ..sampling import check_guidance_interval, make_solver
from ..validation import check_finite, check_frames, check_size, latent_shape, warn_unsupported_size

if TYPE_CHECKING:
    from ..checkpoint.lora_keys import LoRAFile

log = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """Frames as uint8 [T, H, W, 3], the settings that made them, and the written file (if any)."""

    frames: np.ndarray
    metadata: dict[str, Any]
    path: Path | None = None
    latents: torch.Tensor | None = field(default=None, repr=False)

    @property
    def image(self) -> np.ndarray:
        """The first frame, [H, W, 3] (the image of a text-to-image run)."""
        return self.frames[0]


class WanPipeline:
    """A loaded Wan 2.1 text-to-video model. Build it with :func:`openwan.load_pipeline`."""

    def __init__(
        self,
        dit: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        text_encoder_device: torch.device | str | None = None,
        offload: bool = False,
        variant: Variant | None = None,
        source: str = "",
        defaults: SampleDefaults | None = None,
    ) -> None:
        self.dit, self.vae, self.text_encoder = dit, vae, text_encoder
        self.device = torch.device(device)
        self.dtype = dtype
        self.text_encoder_device = torch.device(text_encoder_device) if text_encoder_device else self.device
        self.offload = offload
        self.variant = variant
        self.source = source
        # A checkpoint's own sample_config.json (a custom model) wins over the released variant's defaults.
        self.defaults = defaults or (variant.sample if variant else SampleDefaults(supported_sizes=()))
        self.loras: list[dict[str, Any]] = []  # merged LoRAs, in order: {"path", "scale"}
        # Where each model rests between uses: with offload, on the CPU; otherwise on its run device.
        self._home = {
            "dit": torch.device("cpu") if offload else self.device,
            "vae": torch.device("cpu") if offload else self.device,
            "text_encoder": torch.device("cpu") if offload else self.text_encoder_device,
        }
        for name in self._home:
            getattr(self, name).to(self._home[name])

    # --- helpers ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def on_device(self, name: str, device: torch.device) -> Iterator[nn.Module]:
        """Use component ``name`` ("dit", "vae", "text_encoder") on ``device``; with offload, it goes back
        to the CPU afterwards. For callers that run a component outside ``generate`` (probes, scoring)."""
        model = getattr(self, name)
        model.to(device)
        try:
            yield model
        finally:
            if self._home[name] != device:
                model.to(self._home[name])
                if device.type == "cuda":
                    torch.cuda.empty_cache()

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """umT5 embeddings [B, 512, d] (zero rows after each prompt's length), on the DiT device and dtype."""
        with self.on_device("text_encoder", self.text_encoder_device) as te:
            context, _ = te.encode(prompts)
        return context.to(self.device, self.dtype)

    def load_lora(self, path: str | Path | LoRAFile, scale: float = 1.0) -> None:
        """Merge a LoRA file (diffusers, ComfyUI, kohya or openwan naming) into the DiT's weights.

        Several LoRAs stack; each is recorded in the metadata of later generations. The merge is in place
        and permanent for this pipeline: reload it to get the base model back.
        """
        from ..training.lora import merge_lora

        merged = merge_lora(self.dit, path, scale)
        self.loras.append({"path": merged.source, "scale": merged.scale})

    # --- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        width: int | None = None,
        height: int | None = None,
        frames: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        shift: float | None = None,
        seed: int | None = None,
        solver: str = "unipc",
        output: str | Path | None = None,
        fps: int = SAMPLE_FPS,
        progress: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> GenerationResult:
        """Generate a video (or an image when ``frames == 1``) from ``prompt``.

        Unset arguments take the checkpoint's ``sample_config.json`` defaults, else the variant's official
        ones. ``negative_prompt=None`` uses the model's default negative prompt (the official one for
        released variants); pass ``""`` for none. ``guidance_interval=(low, high)`` applies guidance only at
        noise levels low <= sigma <= high (Kynkäänniemi et al. 2024); other steps run the conditional
        branch alone, one DiT call instead of two. Noise comes from a CPU generator seeded with ``seed``
        as ``randn(16, T', H/8, W/8)``, so a seed gives the same video on every device. With ``output`` the
        result is written atomically (MP4 H.264 at ``fps``, or PNG for one frame) with a sidecar JSON.
        """
        d = self.defaults
        width, height = (width or d.size[0]), (height or d.size[1])
        frames = d.frames if frames is None else frames
        steps = d.steps if steps is None else steps
        guidance = d.guidance if guidance is None else guidance
        guidance_interval = check_guidance_interval(
            d.guidance_interval if guidance_interval is None else guidance_interval)
        shift = d.shift if shift is None else shift
        if negative_prompt is None:
            negative_prompt = d.negative_prompt if d.negative_prompt is not None else (
                d.negative_prefix + DEFAULT_NEGATIVE_PROMPT)
        if seed is None:
            seed = random.randrange(2**63)
        if not isinstance(prompt, str):
            raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
        # Everything a user can get wrong is checked here, before any compute.
        check_size(width, height)
        check_frames(frames)
        if guidance < 0:
            raise InputError(f"guidance must be >= 0, got {guidance}")
        if self.dit.config.has_image_input:
            raise InputError(
                f"{self.source} is an image-to-video model ({self.dit.config.model_type}); "
                "this pipeline generates from text only"
            )
        out_path = check_writable(output, frames=frames) if output is not None else None
        solver_obj = make_solver(solver, steps, shift)
        size_warning = warn_unsupported_size(self.variant, width, height)
        if not prompt.strip():
            log.info("empty prompt: generating unconditionally (only the negative prompt steers)")

        start = time.perf_counter()
        use_cfg = guidance != 1.0
        prompts = [prompt, negative_prompt] if use_cfg else [prompt]
        context = self.encode_prompts(prompts)
        cond, uncond = context[:1], context[1:] if use_cfg else None

        generator = torch.Generator("cpu").manual_seed(seed)
        shape = latent_shape(width, height, frames, self.vae.config.z_dim)
        latents = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)[None]

        with self.on_device("dit", self.device) as dit:
            latents = self._denoise(dit, latents, cond, uncond, guidance, guidance_interval, solver_obj, progress,
                                    callback)
        with self.on_device("vae", self.device) as vae:
            video = vae.decode(latents.to(next(vae.parameters()).dtype))
        check_finite(video, "decoded video", self.dtype)
        frames_np = tensor_to_frames(video[0])  # uint8 [T, H, W, 3]

        meta = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "seed": seed,
            "width": width,
            "height": height,
            "frames": frames,
            "fps": fps,
            "steps": steps,
            "guidance": guidance,
            "guidance_interval": list(guidance_interval),
            "shift": shift,
            "solver": solver,
            "model": self.source,
            "loras": [dict(x) for x in self.loras],
            "variant": self.variant.name if self.variant else "custom",
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "seconds": round(time.perf_counter() - start, 3),
            "openwan_version": __version__,
        }
        if size_warning:
            meta["warning"] = size_warning
        result = GenerationResult(frames=frames_np, metadata=meta, latents=latents.cpu())
        if out_path is not None:
            if frames == 1 and out_path.suffix.lower() == ".png":
                write_image(frames_np[0], out_path, metadata=meta)
            else:
                write_video(frames_np, out_path, fps=fps, metadata=meta)
            write_sidecar(out_path, meta)
            result.path = out_path
        return result

    def _denoise(self, dit, latents, cond, uncond, guidance, guidance_interval, solver, progress,
                 callback) -> torch.Tensor:
        from tqdm.auto import tqdm

        low, high = guidance_interval
        timesteps = solver.timesteps
        for i in tqdm(range(len(timesteps)), desc="denoising", unit="step", disable=not progress):
            t = timesteps[i].reshape(1).to(self.device)
            x = latents.to(self.dtype)
            v = dit(x, t, cond)
            if uncond is not None and low <= solver.sigma(i) <= high:
                v_uncond = dit(x, t, uncond)
                v = v_uncond + guidance * (v - v_uncond)
            check_finite(v, f"DiT output at step {i + 1}", self.dtype)
            latents = solver.step(v.float(), latents)
            if callback is not None:
                callback(i, len(timesteps), latents)
        return latents
