"""3D rotary position embedding of the Wan DiT.

Each head's ``d`` channels are ``d/2`` adjacent pairs (x[2i], x[2i+1]) rotated as complex numbers.
The pairs are split between the three axes of the latent grid: the first ``d/2 - 2·(d//6)`` pairs
rotate with the frame index, the next ``d//6`` with the row, the last ``d//6`` with the column
(22/21/21 pairs for d = 128). Axis ``a`` with ``n_a`` pairs uses the frequencies
``theta^(-2j/(2·n_a))``, j < n_a, i.e. each axis is normalised by its own sub-dimension, and
positions start at 0 on every axis.

Precision: angles and their cos/sin are computed in float64 (as the official code does) and then
stored as fp32 tables; the rotation itself runs in fp32 real arithmetic. Against the official
float64 complex product this differs by ~1 fp32 ulp (relative 1e-7), far below the 1e-5 budget,
it is the precision diffusers uses, and it is several times cheaper than float64 (which MPS lacks
and most GPUs run slowly). Unlike the official 1024-entry tables, any grid length works.
"""

from __future__ import annotations

import torch

ROPE_THETA = 10000.0


def rope_axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Rotary pairs given to the (frame, row, column) axes for a head of ``head_dim`` channels."""
    hw = head_dim // 6
    return head_dim // 2 - 2 * hw, hw, hw


def _axis_angles(length: int, pairs: int, theta: float) -> torch.Tensor:
    """[length, pairs] float64 rotation angles pos · theta^(-2j / (2·pairs))."""
    inv_freq = 1.0 / theta ** (torch.arange(pairs, dtype=torch.float64) * 2 / (2 * pairs))
    return torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)


def rope_tables(
    grid: tuple[int, int, int],
    head_dim: int,
    device: torch.device | str | None = None,
    theta: float = ROPE_THETA,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) tables, each [F·H·W, 1, head_dim] fp32, for tokens in (f, h, w) raster order.

    Each pair's angle is repeated over its two channels and sin carries the rotation's signs
    (-sin, +sin), so ``apply_rope`` is two multiplies and an add. Built once per forward (not per
    block): the per-axis angles are tiny and made on the CPU in float64 (MPS has no float64); only
    the grid expansion happens on ``device``.
    """
    f, h, w = grid
    angles = [_axis_angles(n, p, theta) for n, p in zip(grid, rope_axis_pairs(head_dim))]
    cos_fhw, sin_fhw = [[fn(a).float().to(device) for a in angles] for fn in (torch.cos, torch.sin)]

    def expand(tf: torch.Tensor, th: torch.Tensor, tw: torch.Tensor) -> torch.Tensor:
        table = torch.cat(
            [
                tf[:, None, None].expand(f, h, w, -1),
                th[None, :, None].expand(f, h, w, -1),
                tw[None, None, :].expand(f, h, w, -1),
            ],
            dim=-1,
        )  # [F, H, W, d/2]
        return table.reshape(f * h * w, 1, -1)

    cos, sin = expand(*cos_fhw), expand(*sin_fhw)
    return cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x [B, L, heads, d] by the tables of ``rope_tables``.

    (x0, x1) -> (x0·cos - x1·sin, x1·cos + x0·sin), computed in fp32 whatever x's dtype; the result
    has x's dtype.
    """
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # pairs (x1, x0)
    return torch.addcmul(x * cos, swapped, sin).to(x.dtype)
