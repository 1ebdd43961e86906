"""The sample grids of `openwan bench shapes`: ``grid.png`` (frames of each prompt's first sample in a row,
the prompt on the left) and ``grid.gif`` (all frames, prompts under the cells). Chinese prompts need a
CJK-capable font: $OPENWAN_FONT, else ``fc-list :lang=zh``, else the usual font folders."""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .suites.shapes import ShapesPrompt

if TYPE_CHECKING:
    from PIL import Image

    from .shapes_bench import ShapesRun

GRID_FRAMES = 5  # frames per row of grid.png
GIF_COLUMNS = 4
FONT_ENV = "OPENWAN_FONT"  # a TTF/OTF/TTC with CJK glyphs for the grid labels, if fc-list finds none


def has_cjk(text: str) -> bool:
    return bool(re.search(r"[\u3400-\u9fff]", text))


# ----------------------------------------------------------------------------------------- fonts


def _is_cjk_font(path: str) -> bool:
    """Whether ``path`` loads and draws distinct glyphs for two CJK characters (not two "tofu" boxes)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(path, 16)
    except (OSError, ValueError):
        return False
    glyphs = []
    for ch in ("圆", "星"):
        im = Image.new("L", (24, 24))
        ImageDraw.Draw(im).text((2, 2), ch, font=font, fill=255)
        glyphs.append(np.asarray(im))
    return bool(glyphs[0].any()) and not np.array_equal(glyphs[0], glyphs[1])


@functools.lru_cache(maxsize=1)
def find_cjk_font() -> str | None:
    """A font file that can draw Chinese: $OPENWAN_FONT, else `fc-list :lang=zh`, else common font folders."""
    cands: list[str] = []
    if os.environ.get(FONT_ENV):
        cands.append(os.environ[FONT_ENV])
    fc = shutil.which("fc-list")
    if fc:
        try:
            res = subprocess.run([fc, ":lang=zh", "file"], capture_output=True, text=True, timeout=20,
                                 check=False)
            cands += [ln.split(":")[0].strip() for ln in res.stdout.splitlines() if ln.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    names = re.compile(r"cjk|sourcehan|wqy|wenquanyi|droidsansfallback|uming|ukai|arphic|msyh|simhei|simsun|"
                       r"pingfang|hiragino|heiti|songti|notosans(sc|tc|hk|jp|kr)|notoserif(sc|tc|jp|kr)|unifont",
                       re.IGNORECASE)
    for root in ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"),
                 os.path.expanduser("~/.local/share/fonts"), "/System/Library/Fonts", "/Library/Fonts",
                 "C:/Windows/Fonts"):
        if os.path.isdir(root):
            for dirpath, _, files in os.walk(root):
                cands += [os.path.join(dirpath, f) for f in sorted(files)
                          if names.search(f) and f.lower().endswith((".ttf", ".ttc", ".otf"))]
    for c in dict.fromkeys(cands):
        if os.path.isfile(c) and _is_cjk_font(c):
            return c
    return None


def _font(size: int, cjk: str | None):
    from PIL import ImageFont

    if cjk:
        return ImageFont.truetype(cjk, size)
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


# ----------------------------------------------------------------------------------------- grids


def _label(p: ShapesPrompt, cjk: str | None) -> str:
    if p.language == "en" or cjk or not has_cjk(p.prompt):
        return p.prompt
    return f"[{p.language}] {p.colour} {p.shape} {p.motion}"


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """Greedy wrap at spaces (or characters, for text without spaces) to ``width`` pixels."""
    tokens = text.split(" ") if " " in text else list(text)
    sep = " " if " " in text else ""
    lines, cur = [], ""
    for t in tokens:
        cand = f"{cur}{sep}{t}" if cur else t
        if cur and draw.textlength(cand, font=font) > width:
            lines.append(cur)
            cur = t
        else:
            cur = cand
    return lines + ([cur] if cur else [])


def _upscale(frame: np.ndarray, k: int = 2) -> np.ndarray:
    return frame.repeat(k, axis=0).repeat(k, axis=1)


def _grid_prompts(run: ShapesRun, firsts: Mapping[int, np.ndarray], cjk: str | None) -> list[ShapesPrompt]:
    ps = list({v.prompt.index: v.prompt for v in run.videos if v.prompt.index in firsts}.values())
    if cjk is None and any(p.language == "en" for p in ps):
        ps = [p for p in ps if p.language == "en"]
    return ps


def grid_png(run: ShapesRun, firsts: Mapping[int, np.ndarray], cjk: str | None) -> Image.Image:
    """One row per prompt: GRID_FRAMES evenly spaced frames of its first sample (x2), the prompt on the left."""
    from PIL import Image, ImageDraw

    prompts = _grid_prompts(run, firsts, cjk)
    font, small = _font(13, cjk), _font(11, cjk)
    adh = {}
    for v in run.videos:
        adh.setdefault(v.prompt.index, (v.adherence, v.seed))
    t_len, h, w = next(iter(firsts.values())).shape[:3] if firsts else (1, 32, 32)
    n = min(GRID_FRAMES, t_len)
    idx = np.linspace(0, t_len - 1, n).round().astype(int)
    cell_w, cell_h, gap, label_w, head = 2 * w, 2 * h, 2, 300, 20
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows = []
    for p in prompts:
        lines = _wrap(scratch, _label(p, cjk), font, label_w - 12)
        a, sd = adh[p.index]
        rows.append((p, lines, f"adherence {a:.2f} · seed {sd}"))
    line_h = 16
    heights = [max(cell_h, line_h * (len(lines) + 1) + 6) for _, lines, _ in rows]
    width = label_w + n * (cell_w + gap)
    img = Image.new("RGB", (width, head + sum(heights) + gap * len(rows) + 4), "white")
    draw = ImageDraw.Draw(img)
    for j, t in enumerate(idx):
        draw.text((label_w + j * (cell_w + gap) + 4, 3), f"frame {t}", fill="black", font=small)
    y = head
    for (p, lines, sub), rh in zip(rows, heights):
        frames = firsts[p.index]
        for j, t in enumerate(idx):
            img.paste(Image.fromarray(_upscale(frames[min(t, len(frames) - 1)])), (label_w + j * (cell_w + gap), y))
        for k, ln in enumerate(lines):
            draw.text((6, y + 3 + k * line_h), ln, fill="black", font=font)
        draw.text((6, y + 3 + len(lines) * line_h), sub, fill=(90, 90, 90), font=small)
        y += rh + gap
    return img


def grid_gif_frames(run: ShapesRun, firsts: Mapping[int, np.ndarray], cjk: str | None) -> list[Image.Image]:
    """GIF_COLUMNS columns of the first sample of each English prompt (every prompt when none is English),
    all frames, each with its prompt under it."""
    from PIL import Image, ImageDraw

    ps = list({v.prompt.index: v.prompt for v in run.videos if v.prompt.index in firsts}.values())
    en = [p for p in ps if p.language == "en"]
    ps = en or ps
    if not ps:
        return []
    font = _font(10, cjk)
    t_len, h, w = firsts[ps[0].index].shape[:3]
    cell_w, cell_h, gap = 2 * w, 2 * h, 4
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [_wrap(scratch, _label(p, cjk), font, cell_w - 4)[:3] for p in ps]
    label_h = 12 * max(len(lb) for lb in labels) + 4
    cols = min(GIF_COLUMNS, len(ps))
    nrows = math.ceil(len(ps) / cols)
    base = Image.new("RGB", (cols * (cell_w + gap) + gap, nrows * (cell_h + label_h + gap) + gap), "white")
    draw = ImageDraw.Draw(base)
    spots = []
    for i, (p, lb) in enumerate(zip(ps, labels)):
        x, y = gap + (i % cols) * (cell_w + gap), gap + (i // cols) * (cell_h + label_h + gap)
        spots.append((firsts[p.index], (x, y)))
        for k, ln in enumerate(lb):
            draw.text((x + 2, y + cell_h + 2 + 12 * k), ln, fill="black", font=font)
    out = []
    for t in range(t_len):
        im = base.copy()
        for frames, xy in spots:
            im.paste(Image.fromarray(_upscale(frames[min(t, len(frames) - 1)])), xy)
        out.append(im)
    return out
