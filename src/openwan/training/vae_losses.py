"""Loss terms of Wan-VAE training: L1 reconstruction, KL, LPIPS perceptual loss, hinge GAN losses and
the adaptive GAN weight (Wan 2.1 report §3: "L1 reconstruction loss, KL loss and LPIPS perceptual
loss", then a GAN stage with a 3D discriminator).

Conventions: pixels in [-1, 1]; videos [B, 3, F, H, W]; every function returns a scalar tensor.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError

log = logging.getLogger(__name__)

LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite in fp32 (the latent-diffusion autoencoders' bounds)


def _check_pair(recon: Tensor, target: Tensor) -> None:
    if recon.shape != target.shape:
        raise InputError(f"reconstruction {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")


def _mean(err: Tensor, weight: Tensor | None) -> Tensor:
    if weight is None:
        return err.mean()
    weight = weight.to(err.device, err.dtype).expand_as(err)
    return (err * weight).sum() / weight.sum()


def l1_loss(recon: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean absolute error over all elements; with ``weight`` (broadcastable to them, e.g. a per-pixel
    [B, 1, F, H, W]) the weighted mean."""
    _check_pair(recon, target)
    return _mean((recon - target.to(recon.dtype)).abs(), weight)


def mse_loss(recon: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean squared error over all elements; ``weight`` as in :func:`l1_loss`."""
    _check_pair(recon, target)
    return _mean((recon - target.to(recon.dtype)).square(), weight)


def mask_weights(mask: Tensor, weight: float, dilation: int = 0) -> Tensor:
    """Per-pixel loss weights from a subject mask [B, 1, F, H, W] in [0, 1]: ``weight`` on the subject,
    1 elsewhere, blending on antialiased edges. ``dilation`` widens the mask by that many pixels in
    each frame, so the ring around a subject, where a blurry reconstruction smears its colour into the
    background, weighs as much as the subject."""
    if mask.dim() != 5 or mask.shape[1] != 1:
        raise InputError(f"a loss mask must be [batch, 1, frames, height, width], got {tuple(mask.shape)}")
    if dilation > 0:
        k = 2 * dilation + 1
        mask = F.max_pool3d(mask.float(), (1, k, k), stride=1, padding=(0, dilation, dilation))
    return 1.0 + (weight - 1.0) * mask.float()


def kl_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), SUMMED over the latent elements of a sample and AVERAGED over
    the batch (dim 0). With the sum, the usual small weights (1e-6) mean what they mean in the
    latent-diffusion autoencoders; averaged per element it would be ~2e6 times weaker on an 81-frame
    480p clip (16 x 21 x 60 x 104 latent elements)."""
    logvar = logvar.clamp(*LOGVAR_RANGE)
    kl = 0.5 * (mu.float().square() + logvar.float().exp() - 1.0 - logvar.float())
    return kl.sum() / mu.shape[0]


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss: mean(relu(1 - real)) / 2 + mean(relu(1 + fake)) / 2."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """Generator hinge loss: -mean(fake logits)."""
    return -logits_fake.mean()


def adaptive_gan_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's balance: ||d rec_loss / d W|| / (||d gan_loss / d W|| + 1e-4) at the decoder's last layer
    ``W``, clamped to [0, max_weight] and detached, so the GAN gradient reaching the decoder output is
    about as large as the reconstruction gradient whatever the discriminator's current scale."""
    rec_grad, = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)
    gan_grad, = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


# ---- LPIPS -------------------------------------------------------------------------------------------------------

# torchvision's vgg16().features: conv indices (each followed by ReLU) and the max-pools between stages.
_VGG_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
              14: (256, 256), 17: (256, 512), 19: (512, 512), 21: (512, 512), 24: (512, 512),
              26: (512, 512), 28: (512, 512)}
_VGG_POOLS = (4, 9, 16, 23)
_LPIPS_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
_TORCHVISION_VGG = "vgg16-397923af.pth"

HOW_TO_GET_WEIGHTS = (
    "LPIPS-VGG needs two weight files: torchvision's ImageNet VGG16 (" + _TORCHVISION_VGG + ", e.g. from "
    "`pip install torchvision` then torchvision.models.vgg16(weights='IMAGENET1K_V1'), which caches it in "
    "$TORCH_HOME/hub/checkpoints/) and the LPIPS v0.1 linear layers (`pip install lpips`: lpips/weights/v0.1/vgg.pth). "
    "Set perceptual_weights to a folder holding both files (or one file with both state dicts merged), "
    "or install both so they are found in those default places; or set the perceptual weight to 0."
)


class PerceptualLoss(nn.Module):
    """LPIPS (Zhang et al. 2018) with the VGG16 trunk, version 0.1: per layer, channel-normalised feature
    differences, squared, weighted per channel by the learned linear layer and averaged over space;
    summed over the 5 layers. Frozen (no parameter takes gradients), always in eval mode.

    ``PerceptualLoss()`` has random weights (for tests); load real ones with ``from_pretrained``.
    ``forward(recon, target)`` takes images [N, 3, H, W] or videos [B, 3, F, H, W] (scored frame by
    frame) in [-1, 1] and returns the mean LPIPS distance.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(30):
            if i in _VGG_CONVS:
                layers.append(nn.Conv2d(*_VGG_CONVS[i], 3, padding=1))
            elif i in _VGG_POOLS:
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)  # keys as torchvision's vgg16 ("features.N.weight")
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # a fixed metric: never in training mode

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None) -> PerceptualLoss:
        """Load LPIPS-VGG weights from ``path``: one state-dict file (.pth/.pt/.safetensors) or a folder
        whose state-dict files are merged. Accepted key layouts: torchvision ``vgg16`` (``features.N.*``,
        the classifier is ignored), a whole ``lpips.LPIPS(net='vgg')`` state dict (``net.sliceK.N.*``,
        ``linK.model.1.weight``) and the lpips package's ``weights/v0.1/vgg.pth`` (``linK.model.1.weight``).
        With ``path=None`` the files are taken from where torchvision and lpips keep them, if both exist.
        Raises ``InputError`` naming what is missing and how to get it."""
        files = _weight_files(Path(path)) if path is not None else _default_weight_files()
        state: dict[str, Tensor] = {}
        for file in files:
            for key, value in _load_state_dict(file).items():
                key = _canonical_key(key)
                if key is None:
                    continue
                if key in state:
                    raise InputError(f"perceptual weights: {key} appears in more than one file under {path}")
                state[key] = value
        model = cls()
        wanted = model.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            part = "the VGG16 trunk" if any(k.startswith("features.") for k in missing) else "the LPIPS linear layers"
            raise InputError(f"perceptual weights {[str(f) for f in files]} lack {part} ({len(missing)} tensors, "
                             f"e.g. {missing[0]}). {HOW_TO_GET_WEIGHTS}")
        for key, value in wanted.items():
            if state[key].shape != value.shape:
                raise InputError(f"perceptual weights: {key} has shape {tuple(state[key].shape)}, LPIPS-VGG "
                                 f"needs {tuple(value.shape)}")
        model.load_state_dict({k: state[k] for k in wanted})
        log.info("LPIPS-VGG weights loaded from %s", ", ".join(map(str, files)))
        return model

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        if recon.shape != target.shape or recon.dim() not in (4, 5) or recon.shape[1] != 3:
            raise InputError(f"perceptual loss takes two [N, 3, H, W] images or [B, 3, F, H, W] videos of the same "
                             f"shape, got {tuple(recon.shape)} and {tuple(target.shape)}")
        if recon.dim() == 5:  # frames are scored as images
            recon, target = (x.transpose(1, 2).flatten(0, 1) for x in (recon, target))
        n = recon.shape[0]
        # one pass over both: half the kernel launches
        x = (torch.cat([recon, target.to(recon.dtype)]) - self.shift) / self.scale
        dist = recon.new_zeros(n)
        taps = iter(zip(_LPIPS_TAPS, self.lins))
        tap, lin = next(taps)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == tap:
                f = x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)  # unit norm over channels
                dist = dist + lin((f[:n] - f[n:]).square()).mean(dim=(1, 2, 3))
                tap, lin = next(taps, (None, None))
                if tap is None:
                    break
        return dist.mean()


def _canonical_key(key: str) -> str | None:
    """Key in ``PerceptualLoss``'s layout, or None for tensors LPIPS-VGG does not use."""
    if key.startswith("net.slice"):  # lpips.LPIPS: net.slice{k}.{N}.weight, N the torchvision index
        return "features." + key.split(".", 2)[2]
    if key.startswith("features."):
        return key
    if key.startswith("lin") and key.endswith(".model.1.weight"):  # lpips: lin{k}.model = [Dropout, Conv]
        return f"lins.{key[3:].split('.', 1)[0]}.weight"
    return None  # classifier.*, scaling_layer.* (fixed constants here)


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".pth", ".pt", ".safetensors") and p.is_file())
        if not files:
            raise InputError(f"perceptual weights folder {path} has no .pth/.pt/.safetensors file. "
                             f"{HOW_TO_GET_WEIGHTS}")
        return files
    raise InputError(f"perceptual weights {path} does not exist. {HOW_TO_GET_WEIGHTS}")


def _default_weight_files() -> list[Path]:
    vgg = Path(torch.hub.get_dir()) / "checkpoints" / _TORCHVISION_VGG
    package = _lpips_package_dir()
    lin = package / "weights" / "v0.1" / "vgg.pth" if package is not None else None
    missing = []
    if not vgg.is_file():
        missing.append(f"no {vgg}")
    if lin is None:
        missing.append("the lpips package is not installed")
    elif not lin.is_file():
        missing.append(f"no {lin}")
    if missing:
        raise InputError(f"perceptual loss is on but no perceptual_weights path is set and the default LPIPS "
                         f"weights are missing ({'; '.join(missing)}). {HOW_TO_GET_WEIGHTS}")
    return [vgg, lin]


def _lpips_package_dir() -> Path | None:
    spec = importlib.util.find_spec("lpips")  # located, not imported: it imports torchvision
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _load_state_dict(file: Path) -> dict[str, Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: say which
        raise InputError(f"cannot read perceptual weights {file}: {e}") from e
    if not isinstance(state, dict):
        raise InputError(f"perceptual weights {file} is not a state dict")
    return state
