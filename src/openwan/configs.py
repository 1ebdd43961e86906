"""Model specs and sampling defaults of the released Wan 2.1 variants.

Numbers follow the official ``wan/configs`` and the technical report; a checkpoint's own
``config.json`` (official or diffusers) always wins over these when it is present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .errors import CheckpointError, InputError

# Official default negative prompt (wan/configs/shared_config.py ``sample_neg_prompt``). Used verbatim
# when the user gives none so outputs match the reference implementation.
DEFAULT_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
I2V_NEGATIVE_PREFIX = "镜头晃动，"
FLF2V_NEGATIVE_PREFIX = "镜头切换，"

NUM_TRAIN_TIMESTEPS = 1000
SAMPLE_FPS = 16
TEXT_LEN = 512
VAE_STRIDE = (4, 8, 8)  # (t, h, w) compression of Wan-VAE
PATCH_SIZE = (1, 2, 2)  # (t, h, w) patchify of the DiT

# Per-channel latent statistics of Wan2.1_VAE.pth: z = (mu - mean) / std.
LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


@dataclass(frozen=True)
class DiTConfig:
    """Shape of a Wan DiT (``WanModel`` in the official code). Field names match official config.json."""

    model_type: str = "t2v"  # "t2v" | "i2v" | "flf2v"
    patch_size: tuple[int, int, int] = PATCH_SIZE
    text_len: int = TEXT_LEN
    in_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    out_dim: int = 16
    num_heads: int = 12
    num_layers: int = 30
    window_size: tuple[int, int] = (-1, -1)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    image_dim: int = 1280  # CLIP ViT-H/14 feature width (I2V/FLF2V only)
    image_tokens: int = 257  # CLIP tokens per image (I2V/FLF2V only)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def has_image_input(self) -> bool:
        return self.model_type in ("i2v", "flf2v")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        d["window_size"] = list(self.window_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiTConfig:
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("patch_size", "window_size"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


@dataclass(frozen=True)
class VAEConfig:
    """Shape of Wan-VAE (official ``WanVAE_``)."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    latents_mean: tuple[float, ...] = LATENTS_MEAN
    latents_std: tuple[float, ...] = LATENTS_STD

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL_GUIDANCE_INTERVAL: tuple[float, float] = (0.0, 1.0)  # guidance at every sampling step (plain CFG)


@dataclass(frozen=True)
class SampleDefaults:
    """Sampling defaults of a variant (official generate.py / configs)."""

    steps: int = 50
    shift: float = 5.0
    guidance: float = 5.0
    frames: int = 81
    size: tuple[int, int] = (832, 480)  # (width, height)
    supported_sizes: tuple[tuple[int, int], ...] = ((832, 480), (480, 832))
    negative_prefix: str = ""
    negative_prompt: str | None = None  # None: the official default negative prompt (after negative_prefix)
    # sigmas (low, high) where classifier-free guidance applies; outside it one conditional pass per step
    guidance_interval: tuple[float, float] = FULL_GUIDANCE_INTERVAL

    @classmethod
    def from_file_dict(cls, d: dict[str, Any], source: str = "sample_config.json") -> SampleDefaults:
        """Read a checkpoint's ``sample_config.json`` (size [w, h], frames, steps, shift, guidance,
        guidance_interval [low, high], negative_prompt); every key is optional and the model's native size
        is its only supported size."""
        known = {"size", "frames", "steps", "shift", "guidance", "guidance_interval", "negative_prompt"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown keys {unknown}; known: {sorted(known)}")
        kw: dict[str, Any] = {k: d[k] for k in known - {"size", "guidance_interval"} if k in d}
        if "guidance_interval" in d:
            from .sampling import check_guidance_interval  # sampling imports this module

            try:
                kw["guidance_interval"] = check_guidance_interval(d["guidance_interval"])
            except InputError as e:
                raise CheckpointError(f"{source}: {e}") from None
        size = tuple(d.get("size", cls.size))
        return cls(size=size, supported_sizes=(size,), **kw)

    def to_file_dict(self) -> dict[str, Any]:
        """The ``sample_config.json`` form that ``from_file_dict`` reads. The guidance interval is written only
        when it is not the full (0, 1), so a plain model's file stays readable by releases without it."""
        d: dict[str, Any] = {"size": list(self.size), "frames": self.frames, "steps": self.steps,
                             "shift": self.shift, "guidance": self.guidance}
        if tuple(self.guidance_interval) != FULL_GUIDANCE_INTERVAL:
            d["guidance_interval"] = list(self.guidance_interval)
        return {**d, "negative_prompt": self.negative_prompt}


@dataclass(frozen=True)
class Variant:
    name: str
    dit: DiTConfig
    sample: SampleDefaults = field(default_factory=SampleDefaults)
    description: str = ""


_SIZES_ALL = ((1280, 720), (720, 1280), (832, 480), (480, 832))
_DIT_14B = DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)

VARIANTS: dict[str, Variant] = {
    "t2v-1.3B": Variant(
        "t2v-1.3B",
        DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
        SampleDefaults(supported_sizes=((832, 480), (480, 832))),
        "Wan2.1 text-to-video 1.3B (trained at 480p)",
    ),
    "t2v-14B": Variant(
        "t2v-14B", _DIT_14B, SampleDefaults(size=(1280, 720), supported_sizes=_SIZES_ALL),
        "Wan2.1 text-to-video 14B (480p and 720p)",
    ),
    "t2i-14B": Variant(
        "t2i-14B", _DIT_14B,
        SampleDefaults(frames=1, size=(1024, 1024), supported_sizes=_SIZES_ALL + ((1024, 1024),)),
        "Wan2.1 text-to-image 14B (same weights as t2v-14B)",
    ),
    "i2v-14B": Variant(
        "i2v-14B", replace(_DIT_14B, model_type="i2v", in_dim=36),
        SampleDefaults(steps=40, shift=5.0, size=(1280, 720), supported_sizes=_SIZES_ALL,
                       negative_prefix=I2V_NEGATIVE_PREFIX),
        "Wan2.1 image-to-video 14B (480P/720P checkpoints)",
    ),
    "flf2v-14B": Variant(
        "flf2v-14B", replace(_DIT_14B, model_type="flf2v", in_dim=36),
        SampleDefaults(steps=50, shift=16.0, size=(1280, 720), supported_sizes=_SIZES_ALL,
                       negative_prefix=FLF2V_NEGATIVE_PREFIX + I2V_NEGATIVE_PREFIX),
        "Wan2.1 first-last-frame-to-video 14B",
    ),
}


def variant_for(dit: DiTConfig) -> Variant | None:
    """The released variant whose DiT shape equals ``dit`` (None for custom/tiny shapes)."""
    for v in VARIANTS.values():
        if v.name == "t2i-14B":
            continue
        if (v.dit.dim, v.dit.num_layers, v.dit.in_dim, v.dit.model_type) == (
            dit.dim, dit.num_layers, dit.in_dim, dit.model_type
        ):
            return v
    return None
