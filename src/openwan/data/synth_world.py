"""Procedural bilingual "physics world": short clips of coloured shapes with known ground truth.

Each clip shows one shape (two for collisions) on a textured background doing one motion: constant
velocity moves, a fall under gravity that bounces on a floor (restitution < 1), a 1D elastic collision
with masses proportional to area, a linear grow/shrink, staying still, or a camera pan that moves the
shapes and the background together. Both directions of a move or pan start from the same band of
positions, so only the caption tells the direction, never the first frame. Everything follows from
``(config.seed, split, index)``, so the same config always gives byte-identical frames and manifests.

A fixed list of (shape, colour, motion) combinations is held out of the training split and only appears
in the ``heldout`` split, to measure compositional generalisation of a model trained on the rest.

Coordinates are in output pixels with pixel ``i``'s centre at ``i``; y grows downwards, so gravity is
positive. Frames are drawn at ``supersample`` times the size and box-filtered down for antialiasing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..validation import check_int, parse_size
from .synth_captions import LANGUAGES, MOTIONS, SHAPE_WORDS, render_caption

SHAPES = tuple(SHAPE_WORDS)
# Saturated, pairwise far apart (> 80 in RGB) and far from the grey backgrounds, so a clip can be
# segmented by colour distance alone.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 45),
    "green": (45, 185, 70),
    "blue": (50, 95, 230),
    "yellow": (240, 225, 40),
    "purple": (155, 70, 210),
    "orange": (250, 130, 20),
    "cyan": (40, 205, 215),
}
SIZES = ("small", "large")
# Size radius as a fraction of min(width, height). At 64x64 a small object is ~18 px across: smaller ones
# (0.09, ~11 px) lost their shape in a 4x8x8 VAE (the checker read 54-69 % of shapes off its reconstructions).
SIZE_FRACTION = {"small": 0.14, "large": 0.20}
# Colliding objects are drawn at 0.8x: two large ones at full size fill 51 of 64 px of a row (two large
# stars do not fit at all), leaving no room to approach, and a collision that barely moves teaches nothing.
COLLISION_SCALE = 0.8
BACKGROUNDS = ("dark grey", "light grey", "gradient", "floor")  # the default world's
# Opt-in backgrounds (SynthWorldConfig.backgrounds), outside the default world so its clips stay as they were.
# "mottled": a grey wall with soft light and dark patches about 1.5 latent cells (12 px) across, so a camera
# pan shows at the latent scale, not only in the fine texture every wall carries. (Given to the bundled
# model's DiT as extra pan clips it did not make it follow left pans: MODEL_CARD.md.)
# "windows": a darker wall with light panes 14-22 px wide every 36-48 px, a landmark as big as an object.
# (In a whole recipe run, on a fifth of the world's clips and all fast pans, the DiT moved the walls as far
# as a true pan does, but under "pans left" mostly the wrong way, and shape and fall scores dropped:
# MODEL_CARD.md, runs/r20.)
EXTRA_BACKGROUNDS = ("mottled", "windows")
ALL_BACKGROUNDS = BACKGROUNDS + EXTRA_BACKGROUNDS
SPLITS = ("train", "heldout")
PAN_MOTIONS = ("camera pans left", "camera pans right")

# Every shape, colour and motion appears at least once, so the held-out test probes each attribute.
DEFAULT_HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("circle", "red", "falls and bounces"),
    ("square", "green", "moves left"),
    ("triangle", "blue", "moves right"),
    ("star", "yellow", "moves up"),
    ("circle", "purple", "moves down"),
    ("square", "orange", "collides"),
    ("triangle", "cyan", "grows"),
    ("star", "red", "shrinks"),
    ("circle", "green", "stays still"),
    ("square", "blue", "camera pans left"),
    ("triangle", "yellow", "camera pans right"),
    ("star", "orange", "falls and bounces"),
)

_GROW, _SHRINK = 1.8, 0.45  # final / initial size for grow and shrink
_MIN_TRAVEL, _MAX_TRAVEL = 0.22, 0.55  # a mover's travel as a fraction of the frame side
_FLOOR_FRACTION = 0.9  # floor line at this fraction of the height
# Grey-level std of the background texture: enough for a pan to be measurable, low enough that a 4x8x8
# VAE that cannot carry the texture still reconstructs a clip above 30 dB PSNR. (A coarser texture, blur 3.5 px
# and std 6, lets the VAE keep a fast pan's wall, but a DiT trained on it drew pans no better: MODEL_CARD.md, runs/r26.)
_TEXTURE_STD = 4.0
_PATCH_STD, _PATCH_BLUR = 14.0, 5.0  # "mottled" patches: grey-level std, Gaussian blur sigma in px


def check_pan_speed(speed: int, width: int, frames: int) -> None:
    """A fixed pan speed must leave room for the object: the scene may shift by at most half the width."""
    check_int("pan_speed", speed, 0)
    if speed * (frames - 1) > width // 2:
        raise InputError(f"pan_speed {speed} px/frame shifts a {width}-px-wide, {frames}-frame clip by "
                         f"{speed * (frames - 1)} px, more than half its width; use at most "
                         f"{max(1, (width // 2) // (frames - 1))}")


@dataclass(frozen=True)
class SynthWorldConfig:
    """What to generate. ``held_out=None`` uses DEFAULT_HELD_OUT restricted to the chosen vocabulary."""

    width: int = 64
    height: int = 64
    frames: int = 17
    fps: int = 16
    num_clips: int = 64
    seed: int = 0
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    sizes: tuple[str, ...] = SIZES
    backgrounds: tuple[str, ...] = BACKGROUNDS
    motions: tuple[str, ...] = MOTIONS
    held_out: tuple[tuple[str, str, str], ...] | None = None
    languages: tuple[str, ...] = LANGUAGES
    supersample: int = 4
    pan_speed: int = 0  # camera pans in whole px per frame; 0 = 0.2-0.3 of the width over the clip
    # The walls behind camera pans (None: ``backgrounds``, as behind every other motion). A wall with
    # landmarks ("windows") shows a pan at the noise levels where a DiT lays out a clip; the texture every
    # wall carries is buried in noise there.
    pan_backgrounds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("shapes", "colours", "sizes", "backgrounds", "motions", "languages"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.pan_backgrounds is not None:
            object.__setattr__(self, "pan_backgrounds", tuple(self.pan_backgrounds))
        check_int("width", self.width, 32)
        check_int("height", self.height, 32)
        if self.width % 16 or self.height % 16:
            raise InputError(f"synth-world size must be a multiple of 16 (Wan's VAE stride x patch), "
                             f"got {self.width}x{self.height}; try 64x64")
        check_int("frames", self.frames, 5)
        if (self.frames - 1) % 4:
            raise InputError(f"frames must be 4n+1 (Wan's temporal VAE stride), got {self.frames}; try 17")
        check_int("fps", self.fps, 1)
        check_int("num_clips", self.num_clips, 1)
        check_int("supersample", self.supersample, 1)
        check_pan_speed(self.pan_speed, self.width, self.frames)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name, allowed in (("shapes", SHAPES), ("colours", tuple(COLOURS)), ("sizes", SIZES),
                              ("backgrounds", ALL_BACKGROUNDS), ("motions", MOTIONS), ("languages", LANGUAGES),
                              ("pan_backgrounds", ALL_BACKGROUNDS)):
            values = getattr(self, name)
            if values is None:  # pan_backgrounds: the same walls as every other motion
                continue
            bad = [v for v in values if v not in allowed]
            if not values or bad or len(set(values)) != len(values):
                raise InputError(f"{name} must be distinct values from {allowed}, got {values!r}")
        if "collides" in self.motions and len(self.colours) < 2:
            raise InputError("'collides' needs at least two colours so the two objects can be told apart")
        if self.held_out is None:
            held = tuple(c for c in DEFAULT_HELD_OUT
                         if c[0] in self.shapes and c[1] in self.colours and c[2] in self.motions)
        else:
            held = tuple(tuple(c) for c in self.held_out)
            for c in held:
                if len(c) != 3 or c[0] not in self.shapes or c[1] not in self.colours or c[2] not in self.motions:
                    raise InputError(f"held_out entry {c!r} must be (shape, colour, motion) from the config's "
                                     f"shapes, colours and motions")
        object.__setattr__(self, "held_out", held)
        if len(set(held)) >= len(self.shapes) * len(self.colours) * len(self.motions):
            raise InputError("held_out covers every (shape, colour, motion) combination; nothing is left to train on")


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides one clip; ``seed`` drives the continuous choices (positions, speeds, texture)."""

    shape: str
    colour: str
    size: str
    motion: str
    background: str
    seed: int
    language: str = "en"
    variant: int = 0
    mention_size: bool = False
    shape2: str | None = None  # second object, collisions only
    colour2: str | None = None
    size2: str | None = None
    width: int = 64
    height: int = 64
    frames: int = 17
    fps: int = 16
    supersample: int = 4
    pan_speed: int = 0  # as SynthWorldConfig.pan_speed

    def __post_init__(self) -> None:
        check_pan_speed(self.pan_speed, self.width, self.frames)
        if self.shape not in SHAPES or self.colour not in COLOURS or self.size not in SIZES:
            raise InputError(f"unknown shape/colour/size {self.shape!r}/{self.colour!r}/{self.size!r}; "
                             f"use {SHAPES}, {tuple(COLOURS)}, {SIZES}")
        if self.motion not in MOTIONS:
            raise InputError(f"unknown motion {self.motion!r}; use one of {MOTIONS}")
        if self.background not in ALL_BACKGROUNDS:
            raise InputError(f"unknown background {self.background!r}; use one of {ALL_BACKGROUNDS}")
        if self.motion == "collides":
            if self.shape2 not in SHAPES or self.colour2 not in COLOURS or self.size2 not in SIZES:
                raise InputError("a 'collides' clip needs shape2, colour2 and size2 for the second object")
            if self.colour2 == self.colour:
                raise InputError("the two colliding objects need different colours")


def is_held_out(spec: ClipSpec, held_out: tuple[tuple[str, str, str], ...]) -> bool:
    """Whether ``spec`` shows a held-out (shape, colour, motion); for collisions either object counts."""
    held = set(held_out)
    if (spec.shape, spec.colour, spec.motion) in held:
        return True
    return spec.motion == "collides" and (spec.shape2, spec.colour2, spec.motion) in held


def sample_spec(config: SynthWorldConfig, index: int, split: str = "train") -> ClipSpec:
    """The ``index``-th clip of ``split``; a pure function of (config.seed, split, index)."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng([config.seed, SPLITS.index(split), index])

    def pick(values):
        return values[int(rng.integers(len(values)))]

    held = config.held_out
    if split == "heldout" and not held:
        raise InputError("the heldout split is empty: held_out has no combinations for this vocabulary")
    for _ in range(1000):
        if split == "heldout":
            shape, colour, motion = held[index % len(held)]
        else:
            shape, colour, motion = pick(config.shapes), pick(config.colours), pick(config.motions)
        second: dict[str, Any] = {}
        if motion == "collides":
            second = {"shape2": pick(config.shapes), "colour2": pick([c for c in config.colours if c != colour]),
                      "size2": pick(config.sizes)}
        size, wall, seed = pick(config.sizes), pick(config.backgrounds), int(rng.integers(2**31 - 1))
        if config.pan_backgrounds and motion in PAN_MOTIONS:
            # picked by the clip's own seed, not by one more draw: every other clip stays the default world's
            wall = config.pan_backgrounds[seed % len(config.pan_backgrounds)]
        spec = ClipSpec(shape=shape, colour=colour, size=size, motion=motion, background=wall, seed=seed,
                        language=pick(config.languages), variant=int(rng.integers(6)),
                        mention_size=bool(rng.random() < 0.5), width=config.width, height=config.height,
                        frames=config.frames, fps=config.fps, supersample=config.supersample,
                        pan_speed=config.pan_speed, **second)
        # A held-out collision partner is redrawn for the heldout split too, so each clip tests one combo.
        if split == "heldout" or not is_held_out(spec, held):
            return spec
    raise InputError("could not draw a training clip outside held_out; hold out fewer combinations")


def caption_for(spec: ClipSpec, language: str, variant: int) -> str:
    """Caption of ``spec`` in ``language`` ("en"/"zh") using paraphrase ``variant``."""
    return render_caption(spec.motion, language, variant, shape=spec.shape, colour=spec.colour,
                          size=spec.size if spec.mention_size else None, shape2=spec.shape2,
                          colour2=spec.colour2, size2=spec.size2 if spec.mention_size else None)


# ---------------------------------------------------------------- geometry


def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices [N, 2] for size radius 1, centred on the origin (centroid = origin for all shapes)."""
    if shape == "circle":
        a = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], 1)
    if shape == "square":
        h = 0.85  # area close to the unit circle's so sizes read alike
        return np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    if shape == "triangle":
        a = np.deg2rad([-90, 30, 150])  # apex up
        return 1.15 * np.stack([np.cos(a), np.sin(a)], 1)
    a = np.deg2rad(-90 + 36 * np.arange(10))  # five-pointed star, a point up
    rad = np.where(np.arange(10) % 2 == 0, 1.2, 0.5)
    return np.stack([rad * np.cos(a), rad * np.sin(a)], 1)


def shape_area(shape: str, r: float) -> float:
    """Area of ``shape`` at size radius ``r`` (the mass of a collision object)."""
    p = _unit_polygon(shape)
    x, y = p[:, 0], p[:, 1]
    unit = math.pi if shape == "circle" else 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return unit * r * r


def half_width(shape: str, r: float) -> float:
    """Horizontal half extent: where two shapes side by side touch."""
    return float(np.abs(_unit_polygon(shape)[:, 0]).max()) * r


def _row_extent(poly: np.ndarray, ys: np.ndarray, side: int) -> np.ndarray:
    """Furthest x (side=+1) or -x (side=-1) of ``poly`` on each horizontal line ``ys``; -inf where it misses."""
    a, b = poly, np.roll(poly, -1, axis=0)
    y0, y1 = a[:, 1][None], b[:, 1][None]
    yy = ys[:, None]
    hit = (np.minimum(y0, y1) <= yy) & (yy <= np.maximum(y0, y1)) & (y0 != y1)
    frac = np.where(hit, (yy - y0) / np.where(y0 == y1, 1, y1 - y0), 0)
    x = a[:, 0][None] + frac * (b[:, 0] - a[:, 0])[None]
    return np.where(hit, side * x, -np.inf).max(axis=1)


def contact_distance(shape_a: str, ra: float, shape_b: str, rb: float) -> float:
    """Centre distance at which ``shape_b`` (on the right) touches ``shape_a`` when both share a centre row."""
    pa, pb = _unit_polygon(shape_a) * ra, _unit_polygon(shape_b) * rb
    lo = max(pa[:, 1].min(), pb[:, 1].min())
    hi = min(pa[:, 1].max(), pb[:, 1].max())
    ys = np.linspace(lo, hi, 401)
    return float((_row_extent(pa, ys, 1) + _row_extent(pb, ys, -1)).max())


def bottom_extent(shape: str, r: float) -> float:
    """Distance from the centroid down to the lowest point: where the shape touches the floor."""
    return float(_unit_polygon(shape)[:, 1].max()) * r


# ---------------------------------------------------------------- physics


@dataclass
class _Track:
    """One object's world-space state per frame."""

    shape: str
    colour: str
    size: str
    x: np.ndarray
    y: np.ndarray
    r: np.ndarray


@dataclass
class _Scene:
    tracks: list[_Track]
    cam_x: np.ndarray  # world -> screen is x - cam_x
    floor_y: float
    events: dict[str, Any] = field(default_factory=dict)


def _falls(spec: ClipSpec, rng: np.random.Generator, r: float, floor_y: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Parabolic fall onto the floor with restitution; returns x, y and the bounce events."""
    w, h, t_max = spec.width, spec.height, spec.frames - 1
    contact = floor_y - bottom_extent(spec.shape, r)  # centroid height when touching the floor
    y0 = rng.uniform(1.2 * r + 1, 1.2 * r + 1 + 0.1 * h)
    t_hit = rng.uniform(0.35, 0.5) * t_max  # first impact time, in frames
    g = 2 * (contact - y0) / t_hit**2
    e = rng.uniform(0.55, 0.75)
    x0 = rng.uniform(1.2 * r + 1, w - 2 - 1.2 * r)
    room = max(0.0, min(x0 - 1.2 * r - 1, w - 2 - 1.2 * r - x0))
    vx = rng.uniform(-1, 1) * min(0.3, room / t_max)
    # Event-driven: each segment is a parabola (t0, y0, v0) until the next floor contact.
    segments: list[tuple[float, float, float, float]] = []
    bounces: list[float] = []
    t0, y, v = 0.0, y0, 0.0
    while t0 <= t_max:
        if v == 0.0 and y >= contact:  # at rest on the floor
            segments.append((t0, contact, 0.0, math.inf))
            break
        dt = (-v + math.sqrt(v * v + 2 * g * (contact - y))) / g
        segments.append((t0, y, v, t0 + dt))
        if t0 + dt > t_max:
            break
        bounces.append(t0 + dt)
        v_out = e * (v + g * dt)
        t0, y, v = t0 + dt, contact, -v_out
        if v_out * v_out / (2 * g) < 0.25:  # apex under a quarter pixel: treat as resting
            v = 0.0
    ts = np.arange(spec.frames, dtype=np.float64)
    ys = np.empty_like(ts)
    for i, t in enumerate(ts):
        s0, sy, sv, _ = next(s for s in segments if t <= s[3] or s is segments[-1])
        sg = 0.0 if sv == 0.0 and sy == contact else g
        ys[i] = min(contact, sy + sv * (t - s0) + 0.5 * sg * (t - s0) ** 2)
    frames_at = sorted({round(b) for b in bounces})
    return x0 + vx * ts, ys, {"gravity": g, "restitution": e, "bounce_times": bounces, "bounce_frames": frames_at}


def _collide(spec: ClipSpec, rng: np.random.Generator, ra: float, rb: float) -> tuple[list[np.ndarray], dict]:
    """Two objects on one row meet at ``t_c``; 1D elastic collision with masses proportional to area."""
    w, h, t_max = spec.width, spec.height, spec.frames - 1
    wa, wb = half_width(spec.shape, ra), half_width(spec.shape2, rb)
    gap = contact_distance(spec.shape, ra, spec.shape2, rb)
    da = gap * wa / (wa + wb)  # contact point splits the centre distance in proportion to the widths
    ma, mb = shape_area(spec.shape, ra), shape_area(spec.shape2, rb)
    t_c = rng.uniform(0.4, 0.6) * t_max
    ts = np.arange(spec.frames, dtype=np.float64)
    scale = w / 64
    for attempt in range(200):
        slow = 1 / (1 + 0.1 * attempt)  # shrink speeds only when no contact point keeps both objects inside
        va = rng.uniform(0.8, 2.2) * scale * slow
        vb = -rng.uniform(0.3, 2.2) * scale * slow
        va2 = ((ma - mb) * va + 2 * mb * vb) / (ma + mb)
        vb2 = ((mb - ma) * vb + 2 * ma * va) / (ma + mb)
        # tracks relative to the contact point xc; any xc in [lo, hi] keeps both objects in the frame
        oa = -da + np.where(ts <= t_c, va * (ts - t_c), va2 * (ts - t_c))
        ob = -da + gap + np.where(ts <= t_c, vb * (ts - t_c), vb2 * (ts - t_c))
        lo = max(wa + 0.5 - oa.min(), wb + 0.5 - ob.min())
        hi = min(w - 1.5 - wa - oa.max(), w - 1.5 - wb - ob.max())
        if lo <= hi:
            break
    else:
        raise InputError(f"a {spec.width}x{spec.height} frame is too narrow for a {spec.size} {spec.shape} and a "
                         f"{spec.size2} {spec.shape2} to collide; use a wider frame")
    # The contact point is chosen after the speeds (not fixed at 0.4-0.6 w) so the collision uses all the
    # room the row has instead of slowing down.
    xc = rng.uniform(lo, hi)
    xa, xb = xc + oa, xc + ob
    top = 1.2 * max(ra, rb) + 1
    y = np.full_like(ts, rng.uniform(top, min(h * _FLOOR_FRACTION, h - 1) - top))
    events = {"collision_time": t_c, "collision_frame": round(t_c), "contact_distance": gap,
              "velocities_before": [va, vb], "velocities_after": [va2, vb2]}
    return [xa, y, xb, y.copy()], events


def _simulate(spec: ClipSpec, rng: np.random.Generator) -> _Scene:
    w, h, t_max = spec.width, spec.height, spec.frames - 1
    ts = np.arange(spec.frames, dtype=np.float64)
    floor_y = round(h * _FLOOR_FRACTION)

    def radius(size: str) -> float:
        return SIZE_FRACTION[size] * min(w, h) * rng.uniform(0.92, 1.08)

    r = radius(spec.size)
    cam = np.zeros_like(ts)
    ones = np.ones_like(ts)
    big = r * 1.2 + 1  # clearance from the frame edge for any shape (the star reaches 1.2 r)
    m, events = spec.motion, {}

    def free(lo_x: float, hi_x: float, lo_y: float, hi_y: float) -> tuple[float, float]:
        return rng.uniform(lo_x, max(lo_x, hi_x)), rng.uniform(lo_y, max(lo_y, hi_y))

    if m == "collides":
        ra = r * COLLISION_SCALE
        rb = radius(spec.size2) * COLLISION_SCALE
        (xa, ya, xb, yb), events = _collide(spec, rng, ra, rb)
        tracks = [_Track(spec.shape, spec.colour, spec.size, xa, ya, ra * ones),
                  _Track(spec.shape2, spec.colour2, spec.size2, xb, yb, rb * ones)]
        return _Scene(tracks, cam, floor_y, events)
    if m == "falls and bounces":
        x, y, events = _falls(spec, rng, r, floor_y)
        return _Scene([_Track(spec.shape, spec.colour, spec.size, x, y, r * ones)], cam, floor_y, events)
    if m in ("moves left", "moves right", "moves up", "moves down"):
        # The start is drawn from the same band for both directions of an axis, so the first frame
        # says nothing about which way the object will go: only the caption does. (Starting right
        # movers on the left let a DiT read the direction off the start position and ignore the text.)
        horizontal = m in ("moves left", "moves right")
        sign = 1 if m in ("moves right", "moves down") else -1
        side = w if horizontal else h
        hi = side - 1 - big
        lead = _MIN_TRAVEL * side
        start = rng.uniform(big + lead, max(big + lead, hi - lead))
        room = hi - start if sign > 0 else start - big
        travel = rng.uniform(lead, max(lead, min(_MAX_TRAVEL * side, room)))
        path = start + sign * travel * ts / t_max
        if horizontal:
            x, y = path, rng.uniform(big, max(big, floor_y - big)) * ones
        else:
            x, y = rng.uniform(big, max(big, w - 1 - big)) * ones, path
        return _Scene([_Track(spec.shape, spec.colour, spec.size, x, y, r * ones)], cam, floor_y, events)
    if m in ("grows", "shrinks"):
        end = _GROW if m == "grows" else _SHRINK
        rr = r * (1 + (end - 1) * ts / t_max)
        big = rr.max() * 1.2 + 1
        x0, y0 = free(big, w - 1 - big, big, floor_y - big)
        return _Scene([_Track(spec.shape, spec.colour, spec.size, x0 * ones, y0 * ones, rr)], cam, floor_y, events)
    if m == "stays still":
        x0, y0 = free(big, w - 1 - big, big, floor_y - big)
        track = _Track(spec.shape, spec.colour, spec.size, x0 * ones, y0 * ones, r * ones)
        return _Scene([track], cam, floor_y, events)
    # Camera pans: "pans left" moves the camera left, so the content slides right in the image.
    ss = spec.supersample
    direction = -1 if m == "camera pans left" else 1
    if spec.pan_speed:
        # At 2 px/frame a 4x8x8 VAE sees the wall move one latent cell per latent frame, so its latents
        # shift by whole cells (MODEL_CARD.md); the object then has to start on the side it moves away from.
        speed = float(spec.pan_speed)
        total = speed * t_max
        r = min(r, ((w - 1 - total) / 2 - 1) / 1.2)  # object and pan fit the frame
        big = r * 1.2 + 1
        lo = big + total if direction > 0 else big
        screen_start, y0 = free(lo, lo + (w - 1 - 2 * big - total), big, floor_y - big)
    else:
        px = rng.uniform(0.2, 0.3) * w / t_max
        # Whole pixels per frame where possible, so the background shifts exactly (no resampling blur);
        # long clips fall back to whole supersampled pixels.
        speed = float(round(px)) if px >= 1 else max(1, round(px * ss)) / ss
        total = speed * t_max
        # as for movers: the object's first screen position is independent of the pan direction
        screen_start, y0 = free(big + total, w - 1 - big - total, big, floor_y - big)
    cam = direction * speed * ts
    x0 = screen_start + cam[0]
    events = {"pan_speed": speed}
    return _Scene([_Track(spec.shape, spec.colour, spec.size, x0 * ones, y0 * ones, r * ones)], cam, floor_y, events)


# ---------------------------------------------------------------- rendering


_FLAT_WALLS = {"dark grey": 48, "light grey": 150, "mottled": 100, "windows": 64}  # grey level under the texture


def _background(spec: ClipSpec, rng: np.random.Generator, floor_y: float, margin: int) -> np.ndarray:
    """World background at supersampled resolution, ``margin`` pixels wider on each side for pans.

    Every background carries a low-contrast noise texture so a camera pan is visible (and measurable).
    """
    import cv2

    ss, h = spec.supersample, spec.height
    ww = spec.width + 2 * margin
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    if spec.background in _FLAT_WALLS:
        base = np.full((h, 1, 3), _FLAT_WALLS[spec.background], np.float32)
    elif spec.background == "gradient":
        top, bottom = np.array([35, 40, 55], np.float32), np.array([105, 100, 95], np.float32)
        base = top + (bottom - top) * ys / (h - 1)
    else:  # "floor": a darker wall over a lighter floor, split by a bright line
        base = np.where(ys < floor_y, np.float32(62), np.array([96, 90, 82], np.float32))
    img = np.broadcast_to(base, (h, ww, 3)).copy()
    if spec.background == "mottled":
        patches = cv2.GaussianBlur(rng.standard_normal((h, ww)).astype(np.float32), (0, 0), _PATCH_BLUR)
        img += (_PATCH_STD / max(float(patches.std()), 1e-6)) * patches[:, :, None]
    if spec.background == "windows":
        # light panes 2-3 latent cells wide, one every 36-48 px along the wide wall: a landmark the size of an
        # object, so a pan moves something laid out at high noise (where an object's motion is decided)
        spacing = rng.uniform(36, 48)
        x = rng.uniform(0, spacing)
        top = round(rng.uniform(0.08, 0.2) * h)
        bottom = round(floor_y - rng.uniform(0.15, 0.3) * h)
        while x < ww:
            pw = rng.uniform(14, 22)
            img[top:bottom, round(x):round(x + pw)] = rng.uniform(125, 150)
            x += spacing
    if spec.background != "floor":
        img[math.ceil(floor_y):] *= 0.8  # a faint floor band so falls land on something visible
    noise = cv2.GaussianBlur(rng.standard_normal((h, ww)).astype(np.float32), (0, 0), 1.2)
    img += (_TEXTURE_STD / max(float(noise.std()), 1e-6)) * noise[:, :, None]
    img = cv2.resize(img, (ww * ss, h * ss), interpolation=cv2.INTER_LINEAR)
    if spec.background == "floor":
        line = round((floor_y + 0.5) * ss - 0.5)
        img[max(0, line - ss // 2): line + ss // 2 + 1] = 175.0
    return np.clip(img, 0, 255)


def _draw(canvases, track: _Track, t: int, cam: float, ss: int) -> None:
    """Draw the object on the frame canvas (its colour) and the mask canvas (white)."""
    from PIL import ImageDraw

    # Output coordinate x maps to supersampled pixel-centre coordinate (x + 0.5) * ss - 0.5.
    cx = (track.x[t] - cam + 0.5) * ss - 0.5
    cy = (track.y[t] + 0.5) * ss - 0.5
    pts = [tuple(p) for p in (_unit_polygon(track.shape) * (track.r[t] * ss) + np.array([cx, cy])).tolist()]
    frame, mask = canvases
    ImageDraw.Draw(frame).polygon(pts, fill=COLOURS[track.colour])
    ImageDraw.Draw(mask).polygon(pts, fill=255)


def _render(spec: ClipSpec, scene: _Scene, bg: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [T, H, W, 3] and object masks [T, H, W] (255 = covered; edges antialiased alike)."""
    from PIL import Image

    ss, w, h = spec.supersample, spec.width, spec.height
    out = np.empty((spec.frames, h, w, 3), np.uint8)
    masks = np.empty((spec.frames, h, w), np.uint8)
    bg8 = np.round(bg).astype(np.uint8)
    for t in range(spec.frames):
        x0 = round(float((margin + scene.cam_x[t]) * ss))  # pan speeds are whole supersampled pixels
        canvas = Image.fromarray(np.ascontiguousarray(bg8[:, x0: x0 + w * ss]))
        mask = Image.new("L", canvas.size, 0)
        for track in scene.tracks:
            _draw((canvas, mask), track, t, float(scene.cam_x[t]), ss)
        big = np.asarray(canvas, dtype=np.float32).reshape(h, ss, w, ss, 3).mean(axis=(1, 3))
        out[t] = np.clip(np.round(big), 0, 255).astype(np.uint8)
        masks[t] = np.round(np.asarray(mask, dtype=np.float32).reshape(h, ss, w, ss).mean(axis=(1, 3)))
    return out, masks


def _r(v: float) -> float:
    return round(float(v), 4)


def _truth(spec: ClipSpec, scene: _Scene) -> dict[str, Any]:
    """JSON-ready ground truth; centroids are in screen coordinates (after the camera offset)."""
    objects = []
    for tr in scene.tracks:
        r0 = float(tr.r[0])
        objects.append({
            "shape": tr.shape, "colour": tr.colour, "size": tr.size, "rgb": list(COLOURS[tr.colour]),
            "mass": _r(shape_area(tr.shape, r0)),
            "half_width": _r(half_width(tr.shape, r0)), "bottom": _r(bottom_extent(tr.shape, r0)),
            "centroids": [[_r(x - c), _r(y)] for x, y, c in zip(tr.x, tr.y, scene.cam_x)],
            "radii": [_r(v) for v in tr.r],
        })
    ev = scene.events
    truth: dict[str, Any] = {
        "motion": spec.motion, "objects": objects, "floor_y": _r(scene.floor_y),
        "camera_offsets": [[_r(c), 0.0] for c in scene.cam_x],
        "bounce_frames": list(ev.get("bounce_frames", [])),
        "bounce_times": [_r(v) for v in ev.get("bounce_times", [])],
        "gravity": _r(ev["gravity"]) if "gravity" in ev else None,
        "restitution": _r(ev["restitution"]) if "restitution" in ev else None,
        "collision_frame": ev.get("collision_frame"),
        "collision_time": _r(ev["collision_time"]) if "collision_time" in ev else None,
    }
    if "contact_distance" in ev:
        truth["contact_distance"] = _r(ev["contact_distance"])
    if "velocities_before" in ev:
        truth["velocities_before"] = [_r(v) for v in ev["velocities_before"]]
        truth["velocities_after"] = [_r(v) for v in ev["velocities_after"]]
    return truth


def render_clip(spec: ClipSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """Render ``spec``: uint8 frames [T, H, W, 3] and a JSON-ready ground-truth dict."""
    frames, _, truth = render_clip_with_mask(spec)
    return frames, truth


def render_clip_with_mask(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Render ``spec``: uint8 frames [T, H, W, 3], the objects' uint8 mask [T, H, W] (255 = object) and
    the ground truth."""
    rng = np.random.default_rng(spec.seed)
    scene = _simulate(spec, rng)
    margin = math.ceil(float(np.abs(scene.cam_x).max())) + 2
    bg = _background(spec, rng, scene.floor_y, margin)
    frames, mask = _render(spec, scene, bg, margin)
    return frames, mask, _truth(spec, scene)


# ---------------------------------------------------------------- dataset


def _prompt_row(spec: ClipSpec, language: str, variant: int) -> dict[str, Any]:
    row = {"prompt": caption_for(spec, language, variant), "language": language,
           "shape": spec.shape, "colour": spec.colour, "motion": spec.motion}
    if spec.motion == "collides":
        row.update(shape2=spec.shape2, colour2=spec.colour2)
    return row


def heldout_prompts(config: SynthWorldConfig) -> list[dict[str, Any]]:
    """One evaluation prompt per held-out combination and language (paraphrase 0, no size word).

    Collisions get a fixed partner: the next colour and shape in the config that is not itself held out.
    """
    out = []
    held = set(config.held_out)
    for shape, colour, motion in config.held_out:
        second: dict[str, Any] = {}
        if motion == "collides":
            ci, si = config.colours.index(colour), config.shapes.index(shape)
            pairs = [(config.shapes[(si + k) % len(config.shapes)], config.colours[(ci + k) % len(config.colours)])
                     for k in range(1, len(config.colours) * len(config.shapes) + 1)]
            s2, c2 = next(((s, c) for s, c in pairs if c != colour and (s, c, motion) not in held), pairs[0])
            second = {"shape2": s2, "colour2": c2, "size2": config.sizes[0]}
        spec = ClipSpec(shape=shape, colour=colour, size=config.sizes[0], motion=motion,
                        background=config.backgrounds[0], seed=0, width=config.width, height=config.height,
                        frames=config.frames, fps=config.fps, **second)
        out.extend(_prompt_row(spec, lang, 0) for lang in config.languages)
    return out


def world_settings(config: SynthWorldConfig) -> dict[str, Any]:
    """The config as it reads back from JSON: what a rendered dataset records about itself."""
    return json.loads(json.dumps(asdict(config)))


def settings_path(manifest: str | os.PathLike) -> Path:
    """Where ``generate_dataset`` records the settings a manifest was rendered with."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.world.json")


def generate_dataset(out_dir: str | os.PathLike, config: SynthWorldConfig, split: str = "train") -> Path:
    """Render ``config.num_clips`` clips of ``split`` into ``out_dir`` and write ``<split>.jsonl``.

    Clips go to ``out_dir/<split>/clip_NNNNN.mp4`` and their object masks (white = object, for mask-weighted
    DiT training: ``flow.mask_weight``) to ``clip_NNNNN.mask.mp4``; each manifest row carries the caption in the clip's
    language plus shape, colour, size, ``motion_label`` (``motion`` is the manifest's numeric motion
    score, left unset), language, background, seed, the captions in every language, and the ground
    truth. The train split never contains a held-out combination. ``<split>.world.json``
    records ``config`` (``world_settings``), so a later run can tell whether the folder holds the data it
    asks for.
    """
    from ..checkpoint.io import write_text_atomic
    from ..media import write_video
    from .manifest import ManifestEntry, write_manifest

    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise InputError(f"output {root} exists and is not a folder; give a folder for the dataset")
    clips = root / split
    clips.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(config.num_clips):
        spec = sample_spec(config, i, split)
        frames, mask, truth = render_clip_with_mask(spec)
        # 4:4:4: 4:2:0 chroma subsampling blurs a 64x64 clip's colour edges to ~34 dB before any VAE sees it
        path = write_video(frames, clips / f"clip_{i:05d}.mp4", fps=config.fps, pix_fmt="yuv444p")
        mask_path = write_video(np.repeat(mask[..., None], 3, axis=-1), clips / f"clip_{i:05d}.mask.mp4",
                                fps=config.fps)
        extra: dict[str, Any] = {
            "split": split, "shape": spec.shape, "colour": spec.colour, "size": spec.size,
            "motion_label": spec.motion, "language": spec.language, "background": spec.background,
            "seed": spec.seed, "variant": spec.variant,
            "captions": {lang: caption_for(spec, lang, spec.variant) for lang in LANGUAGES},
            "truth": truth,
        }
        if spec.motion == "collides":
            extra.update(shape2=spec.shape2, colour2=spec.colour2, size2=spec.size2)
        entries.append(ManifestEntry(path=path, caption=caption_for(spec, spec.language, spec.variant),
                                     kind="video", fps=float(config.fps), width=config.width,
                                     height=config.height, num_frames=config.frames, mask=mask_path,
                                     extra=extra))
    manifest = root / f"{split}.jsonl"
    write_text_atomic(settings_path(manifest), json.dumps(world_settings(config), indent=2) + "\n")
    return write_manifest(entries, manifest)


# ---------------------------------------------------------------- command line


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text, example="64x64")
    except InputError as e:
        raise argparse.ArgumentTypeError(f"--{e}") from None


def add_synth_world_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``synth-world`` subcommand to ``subparsers`` (the lead mounts it under ``openwan data``)."""
    p = subparsers.add_parser(
        "synth-world", help="generate a procedural bilingual physics-world video dataset",
        description="Render short clips of coloured shapes that move, fall and bounce, collide, grow, "
        "shrink or sit under a panning camera, with English and Chinese captions and exact ground truth. "
        "Writes OUT/<split>/clip_NNNNN.mp4, its object mask clip_NNNNN.mask.mp4 (for flow.mask_weight in "
        "DiT training) and the manifest OUT/<split>.jsonl. The same --seed always gives "
        "the same dataset. A fixed set of (shape, colour, motion) combinations never appears in the train "
        "split; render them with --split heldout to test generalisation.",
        epilog="example: openwan data synth-world data/world --clips 2000 --size 64x64 --frames 17 --seed 0")
    p.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--clips", type=int, default=64, help="number of clips to render (default: 64)")
    p.add_argument("--size", type=_size, default=(64, 64), metavar="WxH",
                   help="frame size, multiples of 16 (default: 64x64)")
    p.add_argument("--frames", type=int, default=17, help="frames per clip, 4n+1 (default: 17)")
    p.add_argument("--fps", type=int, default=16, help="frame rate of the written MP4s (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="train (held-out combinations excluded) or heldout (only those) (default: train)")
    p.add_argument("--languages", default=",".join(LANGUAGES),
                   help="comma-separated caption languages to draw from (default: en,zh)")
    p.add_argument("--motions", default=",".join(MOTIONS),
                   help="comma-separated motions to draw from (default: all of them)")
    p.add_argument("--backgrounds", default=",".join(BACKGROUNDS),
                   help=f"comma-separated backgrounds to draw from, of {', '.join(ALL_BACKGROUNDS)} "
                   f"(default: {','.join(BACKGROUNDS)})")
    p.add_argument("--pan-backgrounds", default=None, metavar="LIST",
                   help="comma-separated backgrounds behind camera pans only, e.g. windows (default: "
                   "--backgrounds, as behind every other motion)")
    p.add_argument("--pan-speed", type=int, default=0, metavar="PX",
                   help="camera pans move the scene PX whole pixels per frame (2 = one 8-px VAE cell per "
                   "4-frame latent step); 0, the default, draws 0.2-0.3 of the width over the clip")
    return p


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def run_synth_world(args: argparse.Namespace) -> int:
    """Handler for ``openwan data synth-world``; prints where the manifest went."""
    w, h = args.size
    config = SynthWorldConfig(width=w, height=h, frames=args.frames, fps=args.fps, num_clips=args.clips,
                              seed=args.seed, languages=_names(args.languages), motions=_names(args.motions),
                              backgrounds=_names(args.backgrounds), pan_speed=args.pan_speed,
                              pan_backgrounds=None if args.pan_backgrounds is None else _names(args.pan_backgrounds))
    manifest = generate_dataset(args.out, config, split=args.split)
    print(f"wrote {config.num_clips} {args.split} clips ({w}x{h}, {config.frames} frames) and {manifest}")
    if args.split == "heldout":
        print(f"{len(config.held_out)} held-out combinations: "
              + "; ".join(f"{c} {s} {m}" for s, c, m in config.held_out))
    return 0
