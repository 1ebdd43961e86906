"""Finding the files of a Wan checkpoint and telling which layout and which model they hold.

Three layouts are recognised:

* ``official`` — a directory as released by Wan-Video (``Wan2.1-T2V-1.3B/``), see OFFICIAL_LAYOUT;
* ``diffusers`` — a directory as on the diffusers model hub (``Wan2.1-T2V-1.3B-Diffusers/``), see DIFFUSERS_LAYOUT;
* ``single-file`` — one DiT ``.safetensors`` (ComfyUI style, keys may carry ``model.diffusion_model.``);
  the VAE, text encoder and tokenizer are then given separately.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import CheckpointError

Layout = Literal["official", "diffusers", "single-file"]

OFFICIAL_DIT = "diffusion_pytorch_model.safetensors"
OFFICIAL_VAE = "Wan2.1_VAE.pth"
# Not in the release: written only for a VAE that differs from Wan-VAE (e.g. its own latent mean/std),
# in AutoencoderKLWan config.json format. Without it the official VAE config applies.
OFFICIAL_VAE_CONFIG = "vae_config.json"
OFFICIAL_T5 = "models_t5_umt5-xxl-enc-bf16.pth"
OFFICIAL_TOKENIZER = "google/umt5-xxl"
OFFICIAL_CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
COMFY_PREFIX = "model.diffusion_model."

OFFICIAL_LAYOUT = f"""official layout (as Wan2.1-T2V-1.3B/):
    config.json                                  DiT config (class WanModel)
    {OFFICIAL_DIT}         DiT weights (or -0000k-of-0000n shards + .index.json)
    {OFFICIAL_VAE}                               Wan-VAE state dict
    [{OFFICIAL_VAE_CONFIG}]                            only for a custom VAE: its config and latent mean/std
    {OFFICIAL_T5}          umT5-XXL encoder state dict
    {OFFICIAL_TOKENIZER}/                              tokenizer folder"""

DIFFUSERS_LAYOUT = """diffusers layout (as Wan2.1-T2V-1.3B-Diffusers/):
    model_index.json
    transformer/   config.json + diffusion_pytorch_model*.safetensors   (WanTransformer3DModel)
    vae/           config.json + diffusion_pytorch_model.safetensors    (AutoencoderKLWan)
    text_encoder/  config.json + model*.safetensors                     (UMT5EncoderModel)
    tokenizer/     tokenizer files
    scheduler/     scheduler_config.json"""

SINGLE_FILE_LAYOUT = """single-file layout: one DiT .safetensors (keys optionally prefixed with
    'model.diffusion_model.'), with the VAE, text encoder and tokenizer given separately (--vae,
    --text-encoder, --tokenizer)"""


@dataclass
class CheckpointFiles:
    """Where each component of a checkpoint lives. ``None`` means the layout does not have it."""

    layout: Layout
    root: Path
    dit: Path  # a .safetensors file, a .safetensors.index.json, or a .pth
    dit_config: Path | None = None
    vae: Path | None = None
    vae_config: Path | None = None
    text_encoder: Path | None = None  # official .pth, or a diffusers text_encoder/ weights file / index
    text_encoder_config: Path | None = None
    tokenizer: Path | None = None
    clip: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def expected_layout(self) -> str:
        return {"official": OFFICIAL_LAYOUT, "diffusers": DIFFUSERS_LAYOUT}.get(self.layout, SINGLE_FILE_LAYOUT)


def _weights_in(folder: Path, stem: str) -> Path | None:
    """The weights of ``stem`` in ``folder``: safetensors first, then a sharded index, then .pth/.bin."""
    for name in (f"{stem}.safetensors", f"{stem}.safetensors.index.json"):
        if (folder / name).is_file():
            return folder / name
    shards = sorted(folder.glob(f"{stem}-*-of-*.safetensors"))
    if shards:
        raise CheckpointError(
            f"{folder} has sharded weights {shards[0].name} … but no {stem}.safetensors.index.json"
        )
    for ext in (".pth", ".bin"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def find_checkpoint(path: str | os.PathLike) -> CheckpointFiles:
    """Detect the layout of ``path`` and locate every component; raise CheckpointError with the expected
    layout when a required file is missing."""
    root = Path(path).expanduser()
    if not root.exists():
        raise CheckpointError(f"checkpoint path not found: {root}\n"
                              f"expected one of:\n{OFFICIAL_LAYOUT}\n{DIFFUSERS_LAYOUT}")
    if root.is_file():
        if not root.name.endswith((".safetensors", ".safetensors.index.json", ".pth")):
            raise CheckpointError(f"{root} is not a checkpoint file (.safetensors or .pth)\n{SINGLE_FILE_LAYOUT}")
        return CheckpointFiles("single-file", root.parent, dit=root)
    if (root / "model_index.json").is_file() or (root / "transformer").is_dir():
        return _find_diffusers(root)
    if (root / "config.json").is_file() or _weights_in(root, "diffusion_pytorch_model"):
        return _find_official(root)
    raise CheckpointError(
        f"{root} is neither an official nor a diffusers Wan checkpoint (no config.json, model_index.json or "
        f"DiT weights found)\nexpected one of:\n{OFFICIAL_LAYOUT}\n{DIFFUSERS_LAYOUT}"
    )


def _find_official(root: Path) -> CheckpointFiles:
    dit = _weights_in(root, "diffusion_pytorch_model")
    missing = []
    if dit is None:
        missing.append(OFFICIAL_DIT)
    vae = _first_existing(root / "Wan2.1_VAE.safetensors", root / OFFICIAL_VAE)
    t5 = _first_existing(root / "models_t5_umt5-xxl-enc-bf16.safetensors", root / OFFICIAL_T5)
    tok = root / OFFICIAL_TOKENIZER
    if vae is None:
        missing.append(OFFICIAL_VAE)
    if t5 is None:
        missing.append(OFFICIAL_T5)
    if not tok.is_dir():
        missing.append(OFFICIAL_TOKENIZER + "/")
    files = CheckpointFiles(
        "official", root, dit=dit or root / OFFICIAL_DIT,
        dit_config=root / "config.json" if (root / "config.json").is_file() else None,
        vae=vae, vae_config=_first_existing(root / OFFICIAL_VAE_CONFIG), text_encoder=t5,
        tokenizer=tok if tok.is_dir() else None, clip=_first_existing(root / OFFICIAL_CLIP),
    )
    if missing:
        files.notes.append("missing: " + ", ".join(missing))
    if dit is None:
        raise CheckpointError(f"{root}: missing {OFFICIAL_DIT}\nexpected {OFFICIAL_LAYOUT}")
    return files


def _find_diffusers(root: Path) -> CheckpointFiles:
    def sub(name: str, stem: str) -> tuple[Path | None, Path | None]:
        folder = root / name
        if not folder.is_dir():
            return None, None
        cfg = folder / "config.json"
        return _weights_in(folder, stem), cfg if cfg.is_file() else None

    dit, dit_cfg = sub("transformer", "diffusion_pytorch_model")
    if dit is None:
        raise CheckpointError(f"{root}: missing transformer/diffusion_pytorch_model*.safetensors\n"
                              f"expected {DIFFUSERS_LAYOUT}")
    vae, vae_cfg = sub("vae", "diffusion_pytorch_model")
    te, te_cfg = sub("text_encoder", "model")
    tok = root / "tokenizer"
    files = CheckpointFiles(
        "diffusers", root, dit=dit, dit_config=dit_cfg, vae=vae, vae_config=vae_cfg,
        text_encoder=te, text_encoder_config=te_cfg, tokenizer=tok if tok.is_dir() else None,
    )
    missing = [n for n, p in (("vae/", vae), ("text_encoder/", te), ("tokenizer/", files.tokenizer)) if p is None]
    if missing:
        files.notes.append("missing: " + ", ".join(missing))
    return files


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


# --- What a state dict holds -------------------------------------------------------------------------

def identify_state_dict(keys) -> str:
    """Name the model and key convention of a state dict from its keys.

    Returns one of ``dit-official``, ``dit-diffusers``, ``vae-official``, ``vae-diffusers``,
    ``t5-official``, ``t5-transformers``, ``clip`` or ``unknown``; used to catch a file put in the wrong slot.
    """
    keys = set(keys)
    if any(k.startswith(COMFY_PREFIX) for k in keys):
        keys = {k[len(COMFY_PREFIX):] for k in keys if k.startswith(COMFY_PREFIX)}
    if "patch_embedding.weight" in keys:
        if any(k.startswith("blocks.0.self_attn.") for k in keys):
            return "dit-official"
        if any(k.startswith(("blocks.0.attn1.", "condition_embedder.")) for k in keys):
            return "dit-diffusers"
    if "token_embedding.weight" in keys and any(k.startswith("blocks.0.attn.") for k in keys):
        return "t5-official"
    if any(k.startswith("encoder.block.0.layer.0.SelfAttention.") for k in keys):
        return "t5-transformers"
    if "quant_conv.weight" in keys or "encoder.conv_in.weight" in keys:
        return "vae-diffusers"
    if any(k.startswith(("encoder.downsamples.", "decoder.upsamples.")) for k in keys):
        return "vae-official"
    if any(k.startswith(("visual.", "textual.", "log_scale")) for k in keys):
        return "clip"
    return "unknown"


SLOT_NAMES = {
    "dit": "Wan DiT (transformer)",
    "vae": "Wan-VAE",
    "t5": "umT5 text encoder",
    "clip": "CLIP image encoder",
}


def check_slot(kind: str, slot: str, source: Path, expected_layout: str) -> None:
    """Raise a clear error when a file meant for ``slot`` ('dit', 'vae', 't5') holds another model."""
    if kind == "unknown":
        raise CheckpointError(
            f"{source} does not look like a {SLOT_NAMES[slot]} checkpoint (unrecognised keys)\n"
            f"expected {expected_layout}"
        )
    got = kind.split("-")[0]
    if got != slot:
        raise CheckpointError(
            f"wrong file for the {SLOT_NAMES[slot]}: {source} holds a {SLOT_NAMES.get(got, got)} "
            f"state dict\nexpected {expected_layout}"
        )
